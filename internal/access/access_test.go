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
	cred := k.Credential("laptop-42")
	if id, err := k.Verify(cred); err != nil || id != "laptop-42" {
		t.Fatalf("Verify = %q, %v", id, err)
	}
	other := NewDeviceKey([]byte("another key, another server....."))
	for name, c := range map[string]string{
		"another server's key": other.Credential("laptop-42"),
		"another device's mac": cred[:strings.IndexByte(cred, '.')] + k.Credential("laptop-43")[strings.IndexByte(k.Credential("laptop-43"), '.'):],
		"truncated":            cred[:len(cred)-2],
		"no prefix":            strings.TrimPrefix(cred, "rmd_"),
		"empty id":             "rmd_." + strings.Repeat("0", 64),
		"too long":             cred + strings.Repeat("0", 300),
	} {
		if _, err := k.Verify(c); !fault.Is(err, fault.Unauthorized) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzVerifyCredential: device credentials are device input; whatever
// arrives, Verify only returns a device id for a credential the key minted
// for that id, and never panics.
func FuzzVerifyCredential(f *testing.F) {
	k := NewDeviceKey([]byte("0123456789abcdef0123456789abcdef"))
	f.Add(k.Credential("laptop-42"))
	f.Add("rmd_.")
	f.Add("rmd_bGFwdG9w.zz")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := k.Verify(s)
		if err != nil {
			if !fault.Is(err, fault.Unauthorized) {
				t.Fatalf("error kind %v", err)
			}
			return
		}
		if k.Credential(id) != s {
			t.Fatalf("accepted %q for %q, which is not the credential minted for it", s, id)
		}
	})
}
