package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/store"
)

// testSessions: a console session is found by its hash until it expires
// or is ended; sign-in and sign-out are audited without the secret, the
// hash or the anti-forgery token; expired sessions are swept.
func testSessions(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	oidc := access.Principal{Subject: "u-42", Name: "ana@example.com", Role: access.RoleReleaseManager, Products: []string{"fw"}}
	secret, se := access.NewSession(oidc, c.t, time.Hour)
	if !access.WellFormedSession(secret) || se.Hash != access.Hash(secret) {
		t.Fatalf("session secret %q, hash %q", secret, se.Hash)
	}
	if err := s.CreateSession(ctx, se); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, se.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.CSRF != se.CSRF || got.Principal.Actor() != "oidc:u-42(ana@example.com)" || got.Principal.Role != access.RoleReleaseManager ||
		len(got.Principal.Products) != 1 || !got.ExpiresAt.Equal(se.ExpiresAt) {
		t.Fatalf("session read back as %+v, stored %+v", got, se)
	}
	if !got.CheckCSRF(se.CSRF) || got.CheckCSRF("") || got.CheckCSRF(se.CSRF[1:]) {
		t.Fatal("CheckCSRF accepts the wrong token or refuses the right one")
	}

	tokenSession := access.Principal{TokenID: "tok_1", Name: "ci", Role: access.RoleViewer}
	_, other := access.NewSession(tokenSession, c.t, time.Minute)
	if err := s.CreateSession(ctx, other); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(2 * time.Minute)
	if _, err := s.Session(ctx, other.Hash); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("expired session: %v, want Unauthorized", err)
	}
	// The next sign-in sweeps it.
	_, third := access.NewSession(tokenSession, c.t, time.Minute)
	if err := s.CreateSession(ctx, third); err != nil {
		t.Fatal(err)
	}
	if err := s.EndSession(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, se.Hash); !fault.Is(err, fault.Unauthorized) {
		t.Fatalf("ended session: %v, want Unauthorized", err)
	}
	if err := s.EndSession(ctx, got); err != nil {
		t.Fatalf("ending an ended session: %v", err)
	}
	ins, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "console.sign_in"})
	outs, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "console.sign_out"})
	if len(ins) != 3 || len(outs) != 1 || outs[0].Actor != "oidc:u-42(ana@example.com)" {
		t.Fatalf("audit: %d sign-ins, %d sign-outs %+v", len(ins), len(outs), outs)
	}
	for _, e := range append(ins, outs...) {
		for _, leak := range []string{se.Hash, se.CSRF, other.Hash, other.CSRF, secret} {
			if strings.Contains(string(e.Before)+string(e.After), leak) {
				t.Fatalf("audit entry %d records a session secret: %s %s", e.Seq, e.Before, e.After)
			}
		}
	}
}
