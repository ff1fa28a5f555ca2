package access

import (
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

func TestRolesGrantLeastPrivilege(t *testing.T) {
	for _, tc := range []struct {
		role     Role
		can, not []Permission
	}{
		{RoleAdmin, []Permission{Read, Publish, Widen, Reduce, AuditRead, Administer}, nil},
		{RoleReleaseManager, []Permission{Read, Widen, Reduce, AuditRead}, []Permission{Publish, Administer}},
		{RolePublisher, []Permission{Read, Publish}, []Permission{Widen, Reduce, AuditRead, Administer}},
		{RoleAgent, []Permission{Read, Reduce, AuditRead}, []Permission{Publish, Widen, Administer}},
		{RoleViewer, []Permission{Read}, []Permission{Publish, Widen, Reduce, AuditRead, Administer}},
	} {
		p := Principal{Role: tc.role}
		for _, perm := range tc.can {
			if err := p.Authorize(perm); err != nil {
				t.Errorf("%s lacks %s: %v", tc.role, perm, err)
			}
		}
		for _, perm := range tc.not {
			if err := p.Authorize(perm); !fault.Is(err, fault.Forbidden) || !strings.Contains(err.Error(), string(perm)) {
				t.Errorf("%s has %s (%v)", tc.role, perm, err)
			}
		}
	}
	if ValidRole("root") || !ValidRole(RoleAgent) {
		t.Fatal("ValidRole")
	}
}

func TestScopes(t *testing.T) {
	all := Principal{Role: RoleReleaseManager}
	scoped := Principal{Role: RoleReleaseManager, Products: []string{"agent"}}
	if !all.InScope("os") || !scoped.InScope("agent") || scoped.InScope("os") {
		t.Fatal("InScope")
	}
	if scoped.AuthorizeProduct("os") == nil || scoped.AuthorizeUnscoped("a ring") == nil || all.AuthorizeUnscoped("a ring") != nil {
		t.Fatal("scoped principals must be refused outside their products and for cross-product things")
	}
}

func TestTokens(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	req := NewTokenRequest{Name: "ci", Role: RolePublisher, Products: []string{"b", "a", "b"}, TTL: time.Hour}
	if err := req.Validate(); err != nil || strings.Join(req.Products, ",") != "a,b" {
		t.Fatalf("Validate: %v %v", err, req.Products)
	}
	secret, tok := NewToken(req, "tester", now)
	if !WellFormed(secret) || strings.Contains(tok.Hash, secret) || tok.Hash != Hash(secret) {
		t.Fatalf("token %q %+v", secret, tok)
	}
	p, err := Check(tok, secret, now)
	if err != nil || p.Role != RolePublisher || p.TokenID != tok.ID {
		t.Fatalf("Check = %+v, %v", p, err)
	}
	// Another last character (a fixed "0" equalled the secret one time in 16).
	flipped := secret[:len(secret)-1] + map[bool]string{true: "1", false: "0"}[secret[len(secret)-1] == '0']
	if _, err := Check(tok, flipped, now); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("a different secret: %v", err)
	}
	if _, err := Check(tok, secret, now.Add(time.Hour)); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("expired: %v", err)
	}
	tok.RevokedAt = &now
	if _, err := Check(tok, secret, now); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("revoked: %v", err)
	}
	for _, bad := range []NewTokenRequest{{Name: "", Role: RoleAdmin}, {Name: "x", Role: "root"},
		{Name: "x", Role: RoleAdmin, Products: []string{"Bad Name"}}, {Name: "x\n", Role: RoleAdmin}} {
		if err := bad.Validate(); !fault.Is(err, fault.Invalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestDeviceCredentials(t *testing.T) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	cred := k.Credential("laptop-42", 0)
	if id, gen, err := k.Verify(cred); err != nil || id != "laptop-42" || gen != 0 {
		t.Fatalf("Verify = %q, %d, %v", id, gen, err)
	}
	next := k.Credential("laptop-42", 3)
	if id, gen, err := k.Verify(next); err != nil || id != "laptop-42" || gen != 3 {
		t.Fatalf("Verify(generation 3) = %q, %d, %v", id, gen, err)
	}
	if next == cred {
		t.Fatal("a new generation must mint a new credential")
	}
	dot := strings.IndexByte(next, '.')
	other := NewDeviceKey([]byte("another key, another server....."))
	for name, c := range map[string]string{
		"another server's key":   other.Credential("laptop-42", 0),
		"another device's mac":   cred[:strings.IndexByte(cred, '.')] + k.Credential("laptop-43", 0)[strings.IndexByte(k.Credential("laptop-43", 0), '.'):],
		"truncated":              cred[:len(cred)-2],
		"no prefix":              strings.TrimPrefix(cred, "rmd_"),
		"empty id":               "rmd_." + strings.Repeat("0", 64),
		"too long":               cred + strings.Repeat("0", 300),
		"generation relabelled":  next[:dot] + ".4" + next[dot+2:],
		"generation 0 spelled":   next[:dot] + ".0" + cred[strings.IndexByte(cred, '.'):],
		"leading zero":           next[:dot] + ".03" + next[dot+2:],
		"old mac, new gen label": next[:dot] + ".3" + cred[strings.IndexByte(cred, '.'):],
	} {
		if _, _, err := k.Verify(c); !fault.Is(err, fault.Unauthorized) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzVerifyCredential: device credentials are device input; whatever
// arrives, Verify only returns a device id for a credential the key minted
// for that id and generation, and never panics.
func FuzzVerifyCredential(f *testing.F) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	f.Add(k.Credential("laptop-42", 0))
	f.Add(k.Credential("laptop-42", 7))
	f.Add("rmd_.")
	f.Add("rmd_bGFwdG9w.zz")
	f.Add("rmd_bGFwdG9w.1.zz")
	f.Fuzz(func(t *testing.T, s string) {
		id, gen, err := k.Verify(s)
		if err != nil {
			if !fault.Is(err, fault.Unauthorized) {
				t.Fatalf("error kind %v", err)
			}
			return
		}
		if k.Credential(id, gen) != s {
			t.Fatalf("accepted %q for %q generation %d, which is not the credential minted for it", s, id, gen)
		}
	})
}

func TestOfferReceipts(t *testing.T) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	want := Receipt{DeploymentID: "dep_06h1ke0eeeng29k1tc7xcnct84", Wave: 2, At: at}
	r := string(k.AppendReceipt(nil, "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm", want))
	got, err := k.VerifyReceipt(r, "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm")
	if err != nil || got != want {
		t.Fatalf("VerifyReceipt(%q) = %+v, %v", r, got, err)
	}
	parts := strings.Split(r, ".")
	other := NewDeviceKey([]byte("another key, another server....."))
	for name, c := range map[string]struct{ receipt, device, update string }{
		"another device":     {r, "laptop-43", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"another update":     {r, "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhn"},
		"earlier wave":       {parts[0] + ".1." + parts[2] + "." + parts[3], "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"earlier time":       {parts[0] + "." + parts[1] + ".1764570000." + parts[3], "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"another deployment": {"dep_06h1ke0eeeng29k1tc7xcnct85." + strings.Join(parts[1:], "."), "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"another server":     {string(other.AppendReceipt(nil, "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm", want)), "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"missing":            {"", "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"leading zero wave":  {parts[0] + ".02." + parts[2] + "." + parts[3], "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
		"upper-case mac":     {parts[0] + "." + parts[1] + "." + parts[2] + "." + strings.ToUpper(parts[3]), "laptop-42", "upd_06h1ke0dagtjy8xhb1qq10rbhm"},
	} {
		if _, err := k.VerifyReceipt(c.receipt, c.device, c.update); !fault.Is(err, fault.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzVerifyReceipt: receipts are device input; only the exact receipt the
// key issued for a device and update verifies, and nothing panics.
func FuzzVerifyReceipt(f *testing.F) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	f.Add(string(k.AppendReceipt(nil, "d", "upd_x", Receipt{DeploymentID: "dep_x", Wave: 1, At: time.Unix(1764576000, 0)})))
	f.Add("dep_x.1.2.zz")
	f.Add("....")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := k.VerifyReceipt(s, "d", "upd_x")
		if err != nil {
			if !fault.Is(err, fault.Invalid) {
				t.Fatalf("error kind %v", err)
			}
			return
		}
		if again := string(k.AppendReceipt(nil, "d", "upd_x", r)); again != s {
			t.Fatalf("accepted %q, but the receipt issued for %+v is %q", s, r, again)
		}
	})
}

// BenchmarkReceipt: the check-in path signs one receipt per offer; the
// events path verifies one per event.
func BenchmarkReceipt(b *testing.B) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	r := Receipt{DeploymentID: "dep_06h1ke0eeeng29k1tc7xcnct84", Wave: 1, At: time.Unix(1764576000, 0)}
	buf := make([]byte, 0, 128)
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = k.AppendReceipt(buf[:0], "bench-device-0000042", "upd_06h1ke0dagtjy8xhb1qq10rbhm", r)
		}
	})
	s := string(buf)
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.VerifyReceipt(s, "bench-device-0000042", "upd_06h1ke0dagtjy8xhb1qq10rbhm"); err != nil {
				b.Fatal(err)
			}
		}
	})
	cred := k.Credential("bench-device-0000042", 0)
	b.Run("credential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := k.Verify(cred); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestDownloadLinks: a link opens one payload for one device until it
// expires, and no other.
func TestDownloadLinks(t *testing.T) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	sha := strings.Repeat("ab", 32)
	exp := now.Add(time.Hour).Unix()
	sig := k.LinkSignature(sha, "kiosk-7", exp)
	if err := k.VerifyLink(sha, "kiosk-7", exp, sig, now); err != nil {
		t.Fatal(err)
	}
	other := NewDeviceKey([]byte("another key, another server....."))
	for name, c := range map[string]struct {
		sha, device string
		exp         int64
		sig         string
		now         time.Time
	}{
		"expired":        {sha, "kiosk-7", exp, sig, now.Add(time.Hour)},
		"stretched":      {sha, "kiosk-7", exp + 3600, sig, now},
		"another file":   {strings.Repeat("cd", 32), "kiosk-7", exp, sig, now},
		"another device": {sha, "kiosk-8", exp, sig, now},
		"another server": {sha, "kiosk-7", exp, other.LinkSignature(sha, "kiosk-7", exp), now},
		"upper case":     {sha, "kiosk-7", exp, strings.ToUpper(sig), now},
		"none":           {sha, "kiosk-7", exp, "", now},
	} {
		if err := k.VerifyLink(c.sha, c.device, c.exp, c.sig, c.now); !fault.Is(err, fault.Forbidden) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
