package mender

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/fault"
)

func signed(t testing.TB, key crypto.Signer, identity map[string]any) ([]byte, string) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := json.Marshal(identity)
	body, _ := json.Marshal(map[string]string{"id_data": string(id), "pubkey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "tenant_token": "rme_x"})
	sum := sha256.Sum256(body)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, body)
	default:
		sig, err = key.Sign(rand.Reader, sum[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
	}
	return body, base64.StdEncoding.EncodeToString(sig)
}

func TestParseAuthRequest(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edk, _ := ed25519.GenerateKey(rand.Reader)
	for _, key := range []crypto.Signer{rk, ek, edk} {
		body, sig := signed(t, key, map[string]any{"mac": "52:54:00:12:34:56", "serial": []string{"a", "b"}})
		r, err := ParseAuthRequest(body, sig)
		if err != nil || r.Identity["mac"] != "52:54:00:12:34:56" || r.Identity["serial"] != "a,b" || r.TenantToken != "rme_x" {
			t.Fatalf("%T: %+v, %v", key, r, err)
		}
		if _, err := ParseAuthRequest(append(body[:len(body)-1:len(body)-1], ' ', '}'), sig); !fault.Is(err, fault.Unauthorized) {
			t.Errorf("%T: a changed body verified: %v", key, err)
		}
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	body, sig := signed(t, small, map[string]any{"mac": "x"})
	if _, err := ParseAuthRequest(body, sig); err == nil || !strings.Contains(fault.Message(err), "2048") {
		t.Errorf("a 1024-bit key: %v", err)
	}
	for _, tc := range []struct{ body, sig, want string }{
		{`{`, "", "not a JSON object"},
		{`{"id_data": "nope", "pubkey": ""}`, "", "id_data"},
		{`{"id_data": "{\"a\": 1}", "pubkey": ""}`, "", "id_data.a"},
		{`{"id_data": "{\"a\": \"b\"}", "pubkey": "garbage"}`, "", "PEM"},
		{strings.Repeat(" ", MaxAuthRequestBytes+1), "", "larger"},
	} {
		if _, err := ParseAuthRequest([]byte(tc.body), tc.sig); err == nil || !strings.Contains(fault.Message(err), tc.want) {
			t.Errorf("%.30q: %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestDeviceID(t *testing.T) {
	valid := func(s string) bool { return !strings.Contains(s, " ") }
	if id := DeviceID(map[string]string{"device_id": "kiosk-1", "mac": "x"}, valid); id != "kiosk-1" {
		t.Fatal(id)
	}
	a := DeviceID(map[string]string{"mac": "x", "serial": "y"}, valid)
	b := DeviceID(map[string]string{"serial": "y", "mac": "x"}, valid)
	c := DeviceID(map[string]string{"device_id": "not valid", "mac": "x", "serial": "y"}, valid)
	if a != b || !strings.HasPrefix(a, "mender-") || len(a) != 31 || c == a {
		t.Fatal(a, b, c)
	}
}

// FuzzParseAuthRequest: any body and signature give a request or an
// Invalid, Unauthorized or TooLarge error, never a panic.
func FuzzParseAuthRequest(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	body, sig := signed(f, k, map[string]any{"mac": "x"})
	f.Add(body, sig)
	f.Add([]byte(`{"id_data": "{}"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		r, err := ParseAuthRequest(body, sig)
		if err != nil && !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.Unauthorized) && !fault.Is(err, fault.TooLarge) {
			t.Fatalf("%v", err)
		}
		if err == nil && (len(r.Identity) == 0 || len(r.Identity) > MaxIdentityAttributes) {
			t.Fatalf("%+v", r)
		}
	})
}

func TestParseInventory(t *testing.T) {
	keep := func(name, value string) bool { return !strings.Contains(name, " ") && len(value) <= 8 }
	attrs, dropped, err := ParseInventory([]byte(`[{"name": "a", "value": "x"}, {"name": "n", "value": 4.5}, {"name": "l", "value": ["p", true]},
		{"name": "bad name", "value": "x"}, {"name": "long", "value": "123456789"}]`), keep)
	if err != nil || dropped != 2 || attrs["a"] != "x" || attrs["n"] != "4.5" || attrs["l"] != "p,true" || len(attrs) != 3 {
		t.Fatalf("%v %d %v", attrs, dropped, err)
	}
	for _, body := range []string{`{}`, `[{"name": "a", "value": {"b": 1}}]`, `[{"name": "a", "value": [[1]]}]`, strings.Repeat(" ", MaxInventoryBytes+1)} {
		if _, _, err := ParseInventory([]byte(body), keep); err == nil {
			t.Errorf("%.30q accepted", body)
		}
	}
}

// FuzzParseInventory: any body gives attributes that keep accepted, or an
// Invalid or TooLarge error.
func FuzzParseInventory(f *testing.F) {
	f.Add([]byte(`[{"name": "device_type", "value": "kiosk"}, {"name": "ipv4", "value": ["a", "b"]}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keep := func(name, value string) bool { return len(name) < 10 && len(value) < 20 }
		attrs, _, err := ParseInventory(body, keep)
		if err != nil && !fault.Is(err, fault.Invalid) && !fault.Is(err, fault.TooLarge) {
			t.Fatal(err)
		}
		for k, v := range attrs {
			if !keep(k, v) {
				t.Fatalf("kept %q=%q", k, v)
			}
		}
	})
}
