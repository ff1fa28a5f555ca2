// Package mender reads the Mender device API's requests: the
// authentication request a Mender client signs with its key (its identity
// data, public key and tenant token). It is pure: the device API decides
// what a request is granted.
package mender

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// MaxAuthRequestBytes bounds an authentication request; a real one is
// under 2 KiB (a 3072-bit RSA key in PEM is about 650 bytes).
const MaxAuthRequestBytes = 16 << 10

// Limits on identity data.
const (
	MaxIdentityAttributes = 16
	MaxIdentityValueBytes = 256
)

// AuthRequest is a verified authentication request.
type AuthRequest struct {
	// Identity is the device's identity data (from its identity script).
	Identity map[string]string
	// PublicKey is the device's key in PEM, as sent.
	PublicKey string
	// TenantToken is what the client's configuration names TenantToken.
	TenantToken string
}

// ParseAuthRequest reads body ({"id_data", "pubkey", "tenant_token"}) and
// checks signature (X-MEN-Signature, base64) over it with the key it
// carries: RSA (PKCS #1 v1.5, SHA-256), ECDSA (SHA-256) or Ed25519.
func ParseAuthRequest(body []byte, signature string) (AuthRequest, error) {
	if len(body) > MaxAuthRequestBytes {
		return AuthRequest{}, fault.E(fault.TooLarge, "authentication request is larger than %d bytes", MaxAuthRequestBytes)
	}
	var w struct {
		IDData      string `json:"id_data"`
		PubKey      string `json:"pubkey"`
		TenantToken string `json:"tenant_token"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return AuthRequest{}, fault.E(fault.Invalid, "authentication request is not a JSON object with id_data, pubkey and tenant_token: %s", clip(err.Error()))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(w.IDData), &raw); err != nil || len(raw) == 0 {
		return AuthRequest{}, fault.Field("id_data", "must be a JSON object of identity attributes (the identity script's output)")
	}
	if len(raw) > MaxIdentityAttributes {
		return AuthRequest{}, fault.Field("id_data", "at most %d identity attributes", MaxIdentityAttributes)
	}
	r := AuthRequest{Identity: make(map[string]string, len(raw)), PublicKey: w.PubKey, TenantToken: w.TenantToken}
	for k, v := range raw {
		var s string
		if json.Unmarshal(v, &s) != nil {
			var list []string // the identity script may repeat a key
			if json.Unmarshal(v, &list) != nil {
				return AuthRequest{}, fault.Field("id_data."+clip(k), "identity values are strings or lists of strings")
			}
			s = strings.Join(list, ",")
		}
		if k == "" || len(k) > 64 || len(s) > MaxIdentityValueBytes || !utf8.ValidString(k) || !utf8.ValidString(s) {
			return AuthRequest{}, fault.Field("id_data."+clip(k), "identity names are 1-64 bytes and values at most %d bytes of UTF-8", MaxIdentityValueBytes)
		}
		r.Identity[k] = s
	}
	key, err := parseKey(w.PubKey)
	if err != nil {
		return AuthRequest{}, err
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) == 0 {
		return AuthRequest{}, fault.E(fault.Unauthorized, "X-MEN-Signature must be the base64 signature of the request body")
	}
	if !verify(key, body, sig) {
		return AuthRequest{}, fault.E(fault.Unauthorized, "X-MEN-Signature does not verify with the request's public key")
	}
	return r, nil
}

func parseKey(p string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, fault.Field("pubkey", "must be a public key in PEM")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		if k, err2 := x509.ParsePKCS1PublicKey(block.Bytes); err2 == nil {
			return k, nil
		}
		return nil, fault.Field("pubkey", "not a PKIX public key: %s", clip(err.Error()))
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fault.Field("pubkey", "RSA keys must have at least 2048 bits, not %d", k.N.BitLen())
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fault.Field("pubkey", "keys are RSA, ECDSA or Ed25519, not %T", key)
	}
	return key, nil
}

func verify(key crypto.PublicKey, body, sig []byte) bool {
	sum := sha256.Sum256(body)
	switch k := key.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, sum[:], sig) == nil
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, sum[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, body, sig)
	}
	return false
}

// DeviceID is the device id of identity data: its "device_id" attribute
// when that is a usable id, else "mender-" and a digest of the identity
// (the same identity always gives the same id).
func DeviceID(identity map[string]string, valid func(string) bool) string {
	if id := identity["device_id"]; id != "" && valid(id) {
		return id
	}
	var b bytes.Buffer
	for _, k := range slices.Sorted(maps.Keys(identity)) {
		fmt.Fprintf(&b, "%q=%q\n", k, identity[k])
	}
	sum := sha256.Sum256(b.Bytes())
	return "mender-" + hex.EncodeToString(sum[:12])
}

// MaxInventoryBytes bounds an inventory update; MaxInventoryEntries the
// attributes it may carry.
const (
	MaxInventoryBytes   = 64 << 10
	MaxInventoryEntries = 256
)

// ParseInventory reads an inventory update ([{"name", "value"}], a value
// a string, number, boolean or a list of them, joined with commas) into
// attributes. Attributes that would not be device attributes (keep
// rejects the name or value) are left out and counted in dropped.
func ParseInventory(body []byte, keep func(name, value string) bool) (attrs map[string]string, dropped int, err error) {
	if len(body) > MaxInventoryBytes {
		return nil, 0, fault.E(fault.TooLarge, "inventory is larger than %d bytes", MaxInventoryBytes)
	}
	var entries []struct {
		Name  string          `json:"name"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &entries); err != nil {
		return nil, 0, fault.E(fault.Invalid, "inventory is not a JSON array of {name, value}: %s", clip(err.Error()))
	}
	if len(entries) > MaxInventoryEntries {
		return nil, 0, fault.E(fault.Invalid, "inventory has more than %d attributes", MaxInventoryEntries)
	}
	attrs = make(map[string]string, len(entries))
	for i, e := range entries {
		v, ok := scalarOrList(e.Value)
		if !ok {
			return nil, 0, fault.Field(fmt.Sprintf("[%d].value", i), "values are strings, numbers, booleans or lists of them")
		}
		if e.Name == "" || !keep(e.Name, v) {
			dropped++
			continue
		}
		attrs[e.Name] = v
	}
	return attrs, dropped, nil
}

func scalarOrList(raw json.RawMessage) (string, bool) {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, item := range list {
			s, ok := scalar(item)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	return scalar(raw)
}

func scalar(raw json.RawMessage) (string, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	switch x := v.(type) {
	case string:
		return x, true
	case float64, bool:
		return strings.TrimSpace(string(raw)), true
	}
	return "", false
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
