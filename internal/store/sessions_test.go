package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/version"
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

// testDeletes: an update no deployment used, and a ring no plan names,
// can be deleted (audited); a deployed update, or a ring a plan names,
// cannot.
func testDeletes(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	deployed := publish(t, s, "agent", "1.0", payB)
	draft := mustCreate(t, s, newUpdate("agent", "0.9", payA))
	for _, name := range []string{"canary", "c_nary"} {
		if _, _, err := s.PutRing(ctx, targeting.Ring{Name: name, Rank: 0, Rule: "true"}); err != nil {
			t.Fatal(err)
		}
	}
	plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 100}}, Ring: "canary"}
	if _, _, err := s.InsertDeployment(ctx, newDeployment(c, deployed.ID, plan), nil, "token:x"); err != nil {
		t.Fatal(err)
	}
	del := func(id string) error {
		return s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.DeleteUpdate(ctx, id); return err })
	}
	if err := del(deployed.ID); !fault.Is(err, fault.Conflict) || !strings.Contains(err.Error(), "withdraw it instead") {
		t.Fatalf("deleting a deployed update: %v", err)
	}
	gen0, _ := s.Generation(ctx)
	if err := del(draft.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, draft.ID); !fault.Is(err, fault.NotFound) {
		t.Fatalf("a deleted update reads %v", err)
	}
	if gen, _ := s.Generation(ctx); gen != gen0+1 {
		t.Fatalf("generation %d after a delete, want %d", gen, gen0+1)
	}
	// Its version is free again.
	if _, created, err := s.CreateUpdate(ctx, newUpdate("agent", "0.9", payA), version.MustParse("0.9"), nil); err != nil || !created {
		t.Fatalf("declaring a deleted version again: %v, %v", created, err)
	}
	if err := s.DeleteRing(ctx, "canary"); !fault.Is(err, fault.Conflict) {
		t.Fatalf("deleting a ring a plan names: %v", err)
	}
	// "c_nary" is not "canary": the plan match is literal.
	if err := s.DeleteRing(ctx, "c_nary"); err != nil {
		t.Fatalf("deleting a ring no plan names: %v", err)
	}
	if _, err := s.Ring(ctx, "c_nary"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("a deleted ring reads %v", err)
	}
	if err := s.DeleteRing(ctx, "c_nary"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("deleting a ring twice: %v", err)
	}
	for action, target := range map[string]string{"update.delete": draft.ID, "ring.delete": "ring:c_nary"} {
		if es, _ := s.AuditEntries(ctx, store.AuditFilter{Action: action}); len(es) != 1 || es[0].Target != target {
			t.Fatalf("%s audit entries: %+v", action, es)
		}
	}
}
