package store_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/registry"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/telemetry"
	"github.com/ringmaster/ringmaster/internal/version"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestConformance is the one suite every backend must pass.
func TestConformance(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				name string
				fn   func(t *testing.T, s *store.Store, c *clock)
			}{
				{"products", testProducts},
				{"product formats and omaha app ids", testProductFormats},
				{"mender devices", testMenderDevices},
				{"create update", testCreateUpdate},
				{"no partial writes", testNoPartialWrites},
				{"pipeline states", testPipelineStates},
				{"deployments", testDeployments},
				{"holds and rings", testHoldsAndRings},
				{"health counting", testHealthCounting},
				{"tokens", testTokens},
				{"audit chain", testAudit},
				{"enrollment and revocation", testEnrollment},
				{"tuf metadata", testTUFMetadata},
				{"agent plans and approvals", testAgentPlans},
				{"devices", testDevices},
				{"device inventory", testInventory},
				{"console sessions", testSessions},
				{"deleting updates and rings", testDeletes},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := &clock{t: time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)}
					s, err := store.Open(context.Background(), b.DSN(t), store.Options{Now: c.now})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					tc.fn(t, s, c)
				})
			}
		})
	}
}

func TestReopenKeepsData(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.DSN(t)
			s, err := store.Open(ctx, dsn, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: "p"}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s, err = store.Open(ctx, dsn, store.Options{}) // migrations run again: a no-op
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Product(ctx, "p"); err != nil {
				t.Fatalf("product lost across reopen: %v", err)
			}
		})
	}
}

func wantKind(t *testing.T, err error, k fault.Kind) {
	t.Helper()
	if fault.KindOf(err) != k {
		t.Fatalf("error %v has kind %q, want %q", err, fault.KindOf(err), k)
	}
}

func testProducts(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	_, err := s.Product(ctx, "nope")
	wantKind(t, err, fault.NotFound)
	p, created, err := s.PutProduct(ctx, catalog.NewProduct{Name: "windows-11", Title: "Windows 11"})
	if err != nil || !created {
		t.Fatalf("PutProduct = %v, %v", created, err)
	}
	if !p.CreatedAt.Equal(c.t) {
		t.Errorf("created_at %v, want %v", p.CreatedAt, c.t)
	}
	p, created, err = s.PutProduct(ctx, catalog.NewProduct{Name: "windows-11", Title: "Windows 11 (renamed)"})
	if err != nil || created || p.Title != "Windows 11 (renamed)" || !p.CreatedAt.Equal(c.t) {
		t.Fatalf("second PutProduct = %+v, %v, %v", p, created, err)
	}
	if _, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: "agent"}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.Products(ctx)
	if err != nil || len(ps) != 2 || ps[0].Name != "agent" || ps[1].Name != "windows-11" {
		t.Fatalf("Products = %+v, %v", ps, err)
	}
}

// testProductFormats: declared payload formats and Omaha app ids are
// kept, reach the snapshot's view, gate the payload names of new updates,
// and an app id belongs to one product.
func testProductFormats(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	gen0, _ := s.Generation(ctx)
	p, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: "gateway", Formats: map[string]string{"ddi": "swu"}, OmahaAppID: "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}"})
	if err != nil || p.Formats["ddi"] != "swu" || p.OmahaAppID != "e96281a6-d1af-4bde-9a0a-97b76e56dc57" {
		t.Fatalf("PutProduct = %+v, %v", p, err)
	}
	if got, err := s.Product(ctx, "gateway"); err != nil || got.Formats["ddi"] != "swu" || got.OmahaAppID != p.OmahaAppID {
		t.Fatalf("Product = %+v, %v", got, err)
	}
	if gen, _ := s.Generation(ctx); gen <= gen0 {
		t.Errorf("declaring formats did not change the catalog generation (%d, %d)", gen0, gen)
	}
	v, err := s.View(ctx)
	if err != nil || v.Products["gateway"].OmahaAppID != p.OmahaAppID {
		t.Fatalf("snapshot view: %+v, %v", v.Products, err)
	}
	_, _, err = s.PutProduct(ctx, catalog.NewProduct{Name: "other", OmahaAppID: "e96281a6-d1af-4bde-9a0a-97b76e56dc57"})
	wantKind(t, err, fault.Conflict)
	_, _, err = s.CreateUpdate(ctx, newUpdate("gateway", "1.0", catalog.NewPayload{Name: "notes.txt", SHA256: strings.Repeat("a", 64), Size: 1}), version.MustParse("1.0"), nil)
	wantKind(t, err, fault.Invalid)
	if _, _, err := s.CreateUpdate(ctx, newUpdate("gateway", "1.0", catalog.NewPayload{Name: "image.SWU", SHA256: strings.Repeat("a", 64), Size: 1}), version.MustParse("1.0"), nil); err != nil {
		t.Fatalf("an update with a .swu: %v", err)
	}
	// Declaring nothing clears them.
	if p, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: "gateway"}); err != nil || p.Formats != nil || p.OmahaAppID != "" {
		t.Fatalf("cleared: %+v, %v", p, err)
	}
}

// testMenderDevices: a Mender device's request is pending until accepted
// (by an admin, or at once by an enrollment key), keeps its key, refuses
// another key once accepted, and a reset forgets it.
func testMenderDevices(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	id := map[string]string{"mac": "52:54:00:12:34:56"}
	st, err := s.MenderAuthRequest(ctx, "m-1", id, "KEY1", "")
	if err != nil || st != store.MenderPending {
		t.Fatalf("first request: %q, %v", st, err)
	}
	if ds, err := s.MenderDevices(ctx, store.MenderPending, 10); err != nil || len(ds) != 1 || ds[0].Identity["mac"] != id["mac"] || ds[0].PublicKey != "KEY1" {
		t.Fatalf("pending: %+v, %v", ds, err)
	}
	if st, _ := s.MenderAuthRequest(ctx, "m-1", id, "KEY2", ""); st != store.MenderPending { // a pending device's latest key counts
		t.Fatalf("re-keyed while pending: %q", st)
	}
	d, err := s.AcceptMenderDevice(ctx, "m-1", "token:admin", "vouched for")
	if err != nil || d.Status != store.MenderAccepted || d.DecidedBy != "token:admin" || d.DecidedAt == nil {
		t.Fatalf("accept: %+v, %v", d, err)
	}
	_, err = s.AcceptMenderDevice(ctx, "m-1", "token:admin", "again")
	wantKind(t, err, fault.Conflict)
	_, err = s.AcceptMenderDevice(ctx, "m-nope", "token:admin", "who")
	wantKind(t, err, fault.NotFound)
	if st, err := s.MenderAuthRequest(ctx, "m-1", id, "KEY2", ""); err != nil || st != store.MenderAccepted {
		t.Fatalf("accepted key: %q, %v", st, err)
	}
	_, err = s.MenderAuthRequest(ctx, "m-1", id, "KEY3", "")
	wantKind(t, err, fault.Conflict)
	if st, err := s.MenderAuthRequest(ctx, "m-2", id, "KEY9", "enrollment_key:enr_1"); err != nil || st != store.MenderAccepted {
		t.Fatalf("accepted by a key: %q, %v", st, err)
	}
	if _, err := s.ResetDevice(ctx, "m-1", "token:admin", "reflashed"); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.MenderAuthRequest(ctx, "m-1", id, "KEY3", ""); st != store.MenderPending {
		t.Fatalf("after a reset: %q", st)
	}
	if ds, _ := s.MenderDevices(ctx, "", 10); len(ds) != 2 {
		t.Fatalf("all: %+v", ds)
	}
}

func newUpdate(product, ver string, payloads ...catalog.NewPayload) catalog.NewUpdate {
	u := catalog.NewUpdate{Product: product, Version: ver, Payloads: payloads}
	u.Normalize()
	return u
}

var (
	payA = catalog.NewPayload{Name: "a.bin", SHA256: "aa00000000000000000000000000000000000000000000000000000000000000", Size: 10}
	payB = catalog.NewPayload{Name: "b.bin", SHA256: "bb00000000000000000000000000000000000000000000000000000000000000", Size: 20}
)

func mustCreate(t testing.TB, s *store.Store, nu catalog.NewUpdate) catalog.Update {
	t.Helper()
	u, _, err := s.CreateUpdate(context.Background(), nu, version.MustParse(nu.Version), nil)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testCreateUpdate(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	nu := newUpdate("agent", "1.2", payA, payB)
	_, _, err := s.CreateUpdate(ctx, nu, version.MustParse("1.2"), nil)
	wantKind(t, err, fault.NotFound)

	s.PutProduct(ctx, catalog.NewProduct{Name: "agent"})
	u, created, err := s.CreateUpdate(ctx, nu, version.MustParse("1.2"), func(sha string) bool { return sha == payB.SHA256 })
	if err != nil || !created {
		t.Fatalf("CreateUpdate = %v, %v", created, err)
	}
	if u.State != catalog.StateAwaitingUpload || len(u.Payloads) != 2 ||
		u.Payloads[0].State != catalog.PayloadPending || u.Payloads[1].State != catalog.PayloadUploaded {
		t.Fatalf("new update = %+v", u)
	}
	got, err := s.Update(ctx, u.ID)
	if err != nil || got.Version != "1.2" || len(got.Payloads) != 2 || got.Payloads[1].Name != "b.bin" || !got.CreatedAt.Equal(c.t) {
		t.Fatalf("Update = %+v, %v", got, err)
	}

	// Same content, equal version written differently: the same update.
	again := newUpdate("agent", "1.2.0", payA, payB)
	u2, created, err := s.CreateUpdate(ctx, again, version.MustParse("1.2.0"), nil)
	if err != nil || created || u2.ID != u.ID {
		t.Fatalf("repeat CreateUpdate = %s, %v, %v; want %s, false, nil", u2.ID, created, err, u.ID)
	}
	// Different content under an equal version: conflict.
	_, _, err = s.CreateUpdate(ctx, newUpdate("agent", "1.2", payA), version.MustParse("1.2"), nil)
	wantKind(t, err, fault.Conflict)

	byVer, err := s.UpdateByVersion(ctx, "agent", version.MustParse("1.2.0.0"))
	if err != nil || byVer.ID != u.ID {
		t.Fatalf("UpdateByVersion = %v, %v", byVer.ID, err)
	}
	_, err = s.Update(ctx, "upd_00000000000000000000000000")
	wantKind(t, err, fault.NotFound)

	if k, err := s.LastKind(ctx, "agent"); err != nil || k != catalog.KindQuality {
		t.Fatalf("LastKind = %q, %v", k, err)
	}
	if k, err := s.LastKind(ctx, "nothing-yet"); err != nil || k != "" {
		t.Fatalf("LastKind of a product without updates = %q, %v", k, err)
	}
	c.t = c.t.Add(time.Millisecond) // ids order by creation time
	app13 := newUpdate("agent", "1.3", payA)
	app13.Kind = catalog.KindApp
	mustCreate(t, s, app13)
	if k, err := s.LastKind(ctx, "agent"); err != nil || k != catalog.KindApp {
		t.Fatalf("LastKind after an app = %q, %v", k, err)
	}
	list, err := s.Updates(ctx, store.UpdateFilter{Product: "agent"})
	if err != nil || len(list) != 2 || list[0].Version != "1.2" || list[1].Version != "1.3" {
		t.Fatalf("Updates = %+v, %v", list, err)
	}
	page, err := s.Updates(ctx, store.UpdateFilter{After: list[0].ID, Limit: 1})
	if err != nil || len(page) != 1 || page[0].ID != list[1].ID {
		t.Fatalf("Updates page = %+v, %v", page, err)
	}
}

func testNoPartialWrites(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	s.PutProduct(ctx, catalog.NewProduct{Name: "agent"})
	// The same content twice violates the payload key after the update row
	// is written: the whole creation must roll back.
	dup := newUpdate("agent", "2.0", payA, catalog.NewPayload{Name: "other.bin", SHA256: payA.SHA256, Size: payA.Size})
	if _, _, err := s.CreateUpdate(ctx, dup, version.MustParse("2.0"), nil); err == nil {
		t.Fatal("CreateUpdate with a duplicate payload succeeded")
	}
	list, err := s.Updates(ctx, store.UpdateFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("after a failed create, Updates = %+v, %v; want none", list, err)
	}
	if ref, _ := s.PayloadReferenced(ctx, payA.SHA256); ref {
		t.Fatal("a payload row survived the rolled-back creation")
	}
}

func testPipelineStates(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	s.PutProduct(ctx, catalog.NewProduct{Name: "agent"})
	u := mustCreate(t, s, newUpdate("agent", "1.0", payA))
	wantKind(t, s.SetPayloadState(ctx, u.ID, payA.SHA256, catalog.PayloadUploaded, catalog.PayloadStored), fault.Conflict)
	wantKind(t, s.SetPayloadState(ctx, u.ID, payB.SHA256, catalog.PayloadPending, catalog.PayloadUploaded), fault.NotFound)
	if err := s.SetPayloadState(ctx, u.ID, payA.SHA256, catalog.PayloadPending, catalog.PayloadUploaded); err != nil {
		t.Fatal(err)
	}
	gen0, _ := s.Generation(ctx)
	if err := s.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublishing, ""); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublishing, ""), fault.Conflict)
	if stored, _ := s.PayloadStored(ctx, payA.SHA256); stored {
		t.Fatal("PayloadStored true before the payload was stored")
	}
	err := s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetPayloadState(ctx, u.ID, payA.SHA256, catalog.PayloadUploaded, catalog.PayloadStored); err != nil {
			return err
		}
		return tx.SetUpdateState(ctx, u.ID, catalog.StatePublishing, catalog.StatePublished, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Update(ctx, u.ID)
	if got.State != catalog.StatePublished || got.PublishedAt == nil || !got.PublishedAt.Equal(c.t) {
		t.Fatalf("published update = %+v", got)
	}
	if gen1, _ := s.Generation(ctx); gen1 != gen0+1 {
		t.Fatalf("generation %d after publish, want %d", gen1, gen0+1)
	}
	if stored, _ := s.PayloadStored(ctx, payA.SHA256); !stored {
		t.Fatal("PayloadStored false after the payload was stored")
	}
	// Withdrawn: no longer among the signed payloads or the published, and
	// withdrawing again changes nothing; an unpublished update cannot be.
	if n, _ := s.PublishedPayloads(ctx); len(n) != 1 {
		t.Fatalf("published payloads before the withdrawal: %+v", n)
	}
	withdraw := func(id, reason string) (catalog.Update, error) {
		var w catalog.Update
		err := s.InTx(ctx, func(tx *store.Tx) (err error) {
			w, err = tx.WithdrawUpdate(ctx, id, reason)
			return err
		})
		return w, err
	}
	genW, _ := s.Generation(ctx)
	if w, err := withdraw(u.ID, "bad build"); err != nil || w.State != catalog.StateWithdrawn || w.WithdrawReason != "bad build" {
		t.Fatalf("withdraw = %+v, %v", w, err)
	}
	if got, _ := s.Update(ctx, u.ID); got.State != catalog.StateWithdrawn || got.WithdrawnAt == nil || !got.WithdrawnAt.Equal(c.t) {
		t.Fatalf("withdrawn update reads %+v", got)
	}
	if n, _ := s.PublishedPayloads(ctx); len(n) != 0 {
		t.Fatalf("published payloads after the withdrawal: %+v", n)
	}
	if gen, _ := s.Generation(ctx); gen != genW+1 {
		t.Fatalf("generation %d after a withdrawal, want %d", gen, genW+1)
	}
	for state, want := range map[catalog.UpdateState]int{catalog.StateWithdrawn: 1, catalog.StatePublished: 0} {
		if us, err := s.Updates(ctx, store.UpdateFilter{State: state}); err != nil || len(us) != want {
			t.Fatalf("updates in state %s: %d, %v; want %d", state, len(us), err, want)
		}
	}
	if w, err := withdraw(u.ID, "again"); err != nil || w.WithdrawReason != "bad build" {
		t.Fatalf("withdrawing twice = %+v, %v", w, err)
	}
	pending := mustCreate(t, s, newUpdate("agent", "9.9", payB))
	if _, err := withdraw(pending.ID, "never published"); !fault.Is(err, fault.Conflict) {
		t.Fatalf("withdrawing an unpublished update: %v, want Conflict", err)
	}

	// A failing transaction changes nothing.
	u2 := mustCreate(t, s, newUpdate("agent", "1.1", payB))
	_ = s.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetUpdateState(ctx, u2.ID, catalog.StateAwaitingUpload, catalog.StateFailed, "boom"); err != nil {
			return err
		}
		return fault.E(fault.Invalid, "abort")
	})
	if got, _ := s.Update(ctx, u2.ID); got.State != catalog.StateAwaitingUpload || got.FailureReason != "" {
		t.Fatalf("rolled-back state change is visible: %+v", got)
	}

	// A failed publish is retried by creating the version again, here with
	// a corrected payload and title: same id, awaiting its payloads, the
	// stored one counted as uploaded, the retry audited with the failure.
	if err := s.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetUpdateState(ctx, u2.ID, catalog.StateAwaitingUpload, catalog.StateFailed, "hash mismatch")
	}); err != nil {
		t.Fatal(err)
	}
	corrected := newUpdate("agent", "1.1", payA)
	corrected.Title = "fixed build"
	retried, created, err := s.CreateUpdate(ctx, corrected, version.MustParse("1.1"), func(sha string) bool { return sha == payA.SHA256 })
	if err != nil || created || retried.ID != u2.ID || retried.State != catalog.StateAwaitingUpload || retried.FailureReason != "" ||
		retried.Title != "fixed build" || retried.Attempt != 1 || len(retried.Payloads) != 1 || retried.Payloads[0].SHA256 != payA.SHA256 ||
		retried.Payloads[0].State != catalog.PayloadUploaded {
		t.Fatalf("retry of a failed update = %+v, created %v, %v", retried, created, err)
	}
	if got, _ := s.Update(ctx, u2.ID); !reflect.DeepEqual(got.Payloads, retried.Payloads) || got.Title != "fixed build" || got.Attempt != 1 {
		t.Fatalf("stored after the retry: %+v", got)
	}
	if es, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "update.retry"}); len(es) != 1 || es[0].Target != u2.ID || es[0].Reason != "retry after: hash mismatch" {
		t.Fatalf("retry audit entries: %+v", es)
	}
	// A version that did not fail is still not replaced.
	if _, _, err := s.CreateUpdate(ctx, newUpdate("agent", "1.1", payB), version.MustParse("1.1"), nil); !fault.Is(err, fault.Conflict) {
		t.Fatalf("different content for an update awaiting upload: %v, want Conflict", err)
	}
}

func publish(t testing.TB, s *store.Store, product, ver string, p catalog.NewPayload) catalog.Update {
	t.Helper()
	ctx := context.Background()
	s.PutProduct(ctx, catalog.NewProduct{Name: product})
	u := mustCreate(t, s, newUpdate(product, ver, p))
	for _, step := range []func() error{
		func() error {
			return s.SetPayloadState(ctx, u.ID, p.SHA256, catalog.PayloadPending, catalog.PayloadUploaded)
		},
		func() error {
			return s.SetPayloadState(ctx, u.ID, p.SHA256, catalog.PayloadUploaded, catalog.PayloadStored)
		},
		func() error {
			return s.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublished, "")
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

func newDeployment(c *clock, updateID string, plan rollout.Plan) rollout.Deployment {
	id := catalog.NewID("dep", c.t)
	return rollout.Deployment{ID: id, UpdateID: updateID, Plan: plan, Salt: id, CreatedBy: "token:x",
		Status: rollout.Status{State: rollout.Running, Wave: 0, Percent: 100, Approved: -1}}
}

func testDeployments(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	s.PutProduct(ctx, catalog.NewProduct{Name: "agent"})
	draft := mustCreate(t, s, newUpdate("agent", "0.9", payA))
	_, _, err := s.InsertDeployment(ctx, newDeployment(c, draft.ID, rollout.AllAtOnce()), nil, "test")
	wantKind(t, err, fault.Conflict)
	_, _, err = s.InsertDeployment(ctx, newDeployment(c, "upd_00000000000000000000000000", rollout.AllAtOnce()), nil, "test")
	wantKind(t, err, fault.NotFound)

	u := publish(t, s, "agent", "1.0", payB)
	gen0, _ := s.Generation(ctx)
	plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 10}, {Percent: 100}}, Bake: rollout.Duration(time.Hour), Ring: "canary"}
	d, created, err := s.InsertDeployment(ctx, newDeployment(c, u.ID, plan), []rollout.Action{{Kind: "wave_started", Wave: 0, Percent: 10}}, "token:x")
	if err != nil || !created || d.State != rollout.Running || d.Product != "agent" || d.Version != "1.0" || d.CreatedBy != "token:x" {
		t.Fatalf("InsertDeployment = %+v, %v, %v", d, created, err)
	}
	got, err := s.Deployment(ctx, d.ID)
	if err != nil || !reflect.DeepEqual(got.Plan, plan) || got.Status != d.Status || got.Salt != d.ID || !got.CreatedAt.Equal(c.t) {
		t.Fatalf("Deployment = %+v, %v", got, err)
	}
	// The same plan again: the same deployment; another plan: conflict.
	again, created, err := s.InsertDeployment(ctx, newDeployment(c, u.ID, plan), nil, "token:y")
	if err != nil || created || again.ID != d.ID {
		t.Fatalf("repeat InsertDeployment = %+v, %v, %v", again, created, err)
	}
	_, _, err = s.InsertDeployment(ctx, newDeployment(c, u.ID, rollout.AllAtOnce()), nil, "token:y")
	wantKind(t, err, fault.Conflict)
	if gen, _ := s.Generation(ctx); gen != gen0+1 {
		t.Fatalf("generation %d, want %d", gen, gen0+1)
	}
	v, err := s.View(ctx)
	if err != nil || v.Generation != gen0+1 || len(v.Releases) != 1 || v.Releases[0].Update.ID != u.ID || len(v.Releases[0].Update.Payloads) != 1 {
		t.Fatalf("View = %+v, %v", v, err)
	}

	// A mutation commits the status and its events; a failing one nothing.
	c.t = c.t.Add(time.Hour)
	d, err = s.MutateDeployment(ctx, d.ID, "token:alice", func(d *rollout.Deployment) ([]rollout.Action, error) {
		d.State, d.By, d.Reason = rollout.Paused, "token:alice", "crashes"
		return []rollout.Action{{Kind: "paused", Wave: 0, Percent: 10, Detail: "crashes"}}, nil
	}, nil)
	if err != nil || d.State != rollout.Paused || !d.UpdatedAt.Equal(c.t) {
		t.Fatalf("MutateDeployment = %+v, %v", d, err)
	}
	_, err = s.MutateDeployment(ctx, d.ID, "x", func(d *rollout.Deployment) ([]rollout.Action, error) {
		d.State = rollout.Cancelled
		return nil, fault.E(fault.Conflict, "refused")
	}, nil)
	wantKind(t, err, fault.Conflict)
	if got, _ := s.Deployment(ctx, d.ID); got.State != rollout.Paused {
		t.Fatalf("a refused mutation was saved: %s", got.State)
	}
	if gen, _ := s.Generation(ctx); gen != gen0+2 {
		t.Fatalf("pausing did not bump the generation: %d", gen)
	}
	// Paused deployments stay in the view (explain names them); the
	// snapshot does not offer them.
	if v, _ := s.View(ctx); len(v.Releases) != 1 || v.Releases[0].Deployment.State != rollout.Paused {
		t.Fatalf("view of a paused deployment: %+v", v.Releases)
	}
	evs, err := s.DeploymentEvents(ctx, d.ID)
	if err != nil || len(evs) != 3 || evs[0].Kind != "created" || evs[1].Kind != "wave_started" || evs[2].Kind != "paused" ||
		evs[2].Actor != "token:alice" || evs[2].Detail != "crashes" || !evs[2].At.Equal(c.t) {
		t.Fatalf("events = %+v, %v", evs, err)
	}
	_, err = s.MutateDeployment(ctx, "dep_00000000000000000000000000", "x", func(*rollout.Deployment) ([]rollout.Action, error) { return nil, nil }, nil)
	wantKind(t, err, fault.NotFound)

	// A cancelled update can be deployed again, with any plan.
	s.MutateDeployment(ctx, d.ID, "x", func(d *rollout.Deployment) ([]rollout.Action, error) {
		d.State = rollout.Cancelled
		return nil, nil
	}, nil)
	c.t = c.t.Add(time.Millisecond)
	d2, created, err := s.InsertDeployment(ctx, newDeployment(c, u.ID, rollout.AllAtOnce()), nil, "token:x")
	if err != nil || !created || d2.ID == d.ID {
		t.Fatalf("redeploy = %+v, %v, %v", d2, created, err)
	}
	if v, _ := s.View(ctx); len(v.Releases) != 1 || v.Releases[0].Deployment.ID != d2.ID {
		t.Fatalf("a cancelled deployment is in the view: %+v", v.Releases)
	}
	list, err := s.Deployments(ctx, store.DeploymentFilter{Product: "agent"})
	if err != nil || len(list) != 2 || list[0].ID != d2.ID {
		t.Fatalf("Deployments = %+v, %v", list, err)
	}
	if live, _ := s.Deployments(ctx, store.DeploymentFilter{States: []rollout.State{rollout.Cancelled}}); len(live) != 1 || live[0].ID != d.ID {
		t.Fatalf("Deployments by state = %+v", live)
	}
	if other, _ := s.Deployments(ctx, store.DeploymentFilter{Product: "nothing"}); len(other) != 0 {
		t.Fatalf("Deployments for another product = %+v", other)
	}
}

func testHoldsAndRings(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	_, err := s.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", c.t), Product: "nope", Rule: "true", Reason: "x", Source: targeting.HoldManual}, nil)
	wantKind(t, err, fault.NotFound)
	u := publish(t, s, "os", "2.0", payA)
	s.PutProduct(ctx, catalog.NewProduct{Name: "other"})
	_, err = s.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", c.t), Product: "other", UpdateID: u.ID, Rule: "true", Reason: "x", Source: targeting.HoldManual}, nil)
	wantKind(t, err, fault.Invalid)

	gen0, _ := s.Generation(ctx)
	h, err := s.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", c.t), Product: "os", UpdateID: u.ID,
		Rule: `device.attributes.oem == "contoso"`, Reason: "driver crash", Source: targeting.HoldManual, CreatedBy: "token:x"}, nil)
	if err != nil || h.Status != targeting.HoldActive || h.Version != "2.0" {
		t.Fatalf("CreateHold = %+v, %v", h, err)
	}
	if v, _ := s.View(ctx); len(v.Holds) != 1 || v.Holds[0].ID != h.ID || v.Generation != gen0+1 {
		t.Fatalf("View holds = %+v", v.Holds)
	}
	c.t = c.t.Add(time.Minute)
	r, err := s.ReleaseHold(ctx, h.ID, "token:y", "fixed")
	if err != nil || r.Status != targeting.HoldReleased || r.ReleasedBy != "token:y" || r.ReleasedAt == nil || !r.ReleasedAt.Equal(c.t) {
		t.Fatalf("ReleaseHold = %+v, %v", r, err)
	}
	if again, err := s.ReleaseHold(ctx, h.ID, "token:z", "again"); err != nil || again.ReleasedBy != "token:y" {
		t.Fatalf("second release = %+v, %v", again, err)
	}
	if v, _ := s.View(ctx); len(v.Holds) != 0 {
		t.Fatalf("released hold still in the view")
	}
	if hs, _ := s.Holds(ctx, "os", ""); len(hs) != 1 {
		t.Fatalf("Holds = %+v", hs)
	}
	_, err = s.ReleaseHold(ctx, "hld_00000000000000000000000000", "x", "gone")
	wantKind(t, err, fault.NotFound)

	ring, created, err := s.PutRing(ctx, targeting.Ring{Name: "canary", Rank: 0, Members: []string{"d2", "d1"}})
	if err != nil || !created || len(ring.Members) != 2 || ring.Members[0] != "d1" {
		t.Fatalf("PutRing = %+v, %v, %v", ring, created, err)
	}
	ring, created, err = s.PutRing(ctx, targeting.Ring{Name: "canary", Rank: 1, Rule: `device.id.startsWith("lab-")`, Members: []string{"d3"}})
	if err != nil || created || ring.Rank != 1 || len(ring.Members) != 1 || ring.Members[0] != "d3" {
		t.Fatalf("replace ring = %+v, %v, %v", ring, created, err)
	}
	s.PutRing(ctx, targeting.Ring{Name: "broad", Rank: 2, Rule: "true"})
	rings, err := s.Rings(ctx)
	if err != nil || len(rings) != 2 || rings[0].Name != "canary" || rings[1].Name != "broad" {
		t.Fatalf("Rings = %+v, %v", rings, err)
	}
	_, err = s.Ring(ctx, "nope")
	wantKind(t, err, fault.NotFound)

	// Floors are part of the view and bump the generation when they change.
	gen1, _ := s.Generation(ctx)
	p, _, err := s.PutProduct(ctx, catalog.NewProduct{Name: "os", Floors: []string{"1.5"}})
	if err != nil || len(p.Floors) != 1 {
		t.Fatalf("PutProduct floors = %+v, %v", p, err)
	}
	if v, _ := s.View(ctx); v.Generation != gen1+1 || len(v.Floors["os"]) != 1 {
		t.Fatalf("View floors = %+v (generation %d, was %d)", v.Floors, v.Generation, gen1)
	}
}

func testHealthCounting(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	u := publish(t, s, "agent", "2.0", payA)
	plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 50}, {Percent: 100}}}
	d, _, err := s.InsertDeployment(ctx, newDeployment(c, u.ID, plan), nil, "x")
	if err != nil {
		t.Fatal(err)
	}
	cohort := store.Cohort{Attributes: []string{"oem", "arch"}, MaxValues: 2}
	// Events as the device API publishes them: with the deployment and
	// wave of the verified offer receipt they cite.
	waveOf := map[string]int{"d1": 0, "d2": 1, "d3": 1}
	ev := func(id, dev string, typ telemetry.Type, oem string) telemetry.Event {
		return telemetry.Event{ID: id, DeviceID: dev, UpdateID: u.ID, DeploymentID: d.ID, Type: typ, Time: c.t, Received: c.t,
			Attributes: map[string]string{"oem": oem, "arch": "x64"}, Wave: waveOf[dev], OfferedAt: c.t.Add(-time.Minute)}
	}
	at := func(e telemetry.Event, d time.Duration) telemetry.Event {
		e.Time = e.Time.Add(d)
		return e
	}
	uncited := ev("e6", "d7", telemetry.InstallSucceeded, "contoso")
	uncited.OfferedAt = time.Time{} // no verified offer: counts nothing
	batch := []telemetry.Event{
		ev("e1", "d1", telemetry.InstallFailed, "contoso"),
		at(ev("e2", "d2", telemetry.InstallFailed, "fabrikam"), -2*time.Hour),
		at(ev("e3", "d3", telemetry.InstallSucceeded, "northwind"), 90*time.Minute), // a third oem: counted as "other"
		ev("e4", "d1", telemetry.InstallFailed, "contoso"),                          // the same device again: counted once
		{ID: "e5", DeviceID: "d9", UpdateID: "upd_00000000000000000000000000", Type: telemetry.Offered, Time: c.t, Received: c.t, OfferedAt: c.t},
		uncited,
	}
	tally, err := s.RecordEvents(ctx, batch, cohort)
	if err != nil || tally != (store.Tally{Counted: 3, Repeats: 1, Unattributed: 2}) {
		t.Fatalf("first delivery: %+v, %v", tally, err)
	}
	// Redelivery of the same batch counts nothing.
	tally, err = s.RecordEvents(ctx, batch, cohort)
	if err != nil || tally != (store.Tally{Repeats: 4, Unattributed: 2}) {
		t.Fatalf("redelivery: %+v, %v", tally, err)
	}
	if tally, err := s.RecordEvents(ctx, []telemetry.Event{batch[1], batch[1]}, cohort); err != nil || tally != (store.Tally{Repeats: 1, Duplicates: 1}) {
		t.Fatalf("an event twice in a batch: %+v, %v", tally, err)
	}
	// The offers the events cite are re-derived into the server's records
	// (a record lost before its batch was written comes back).
	if offers, err := s.OfferCounts(ctx, d.ID); err != nil || !reflect.DeepEqual(offers, map[int]int64{0: 1, 1: 2}) {
		t.Fatalf("OfferCounts after events = %v, %v", offers, err)
	}
	// A device's history: its offer and counted outcome, in the listed
	// deployments only.
	offers, outcomes, err := s.DeviceHistory(ctx, "d1", []string{d.ID, "dep_other"})
	if err != nil || len(offers) != 1 || offers[0].DeploymentID != d.ID || offers[0].Wave != 0 || !offers[0].At.Equal(c.t.Add(-time.Minute)) ||
		len(outcomes) != 1 || outcomes[0].Outcome != string(telemetry.InstallFailed) || outcomes[0].DeploymentID != d.ID {
		t.Fatalf("DeviceHistory(d1) = %+v, %+v, %v", offers, outcomes, err)
	}
	if offers, outcomes, err := s.DeviceHistory(ctx, "d1", []string{"dep_other"}); err != nil || len(offers)+len(outcomes) != 0 {
		t.Fatalf("DeviceHistory in another deployment = %+v, %+v, %v", offers, outcomes, err)
	}
	counts, err := s.HealthCounts(ctx, d.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, hc := range counts {
		got[fmt.Sprintf("%s/%s", hc.Outcome, hc.Cell)] += hc.Devices
	}
	want := map[string]int64{
		"install_failed/": 2, "install_failed/oem=contoso": 1, "install_failed/oem=fabrikam": 1, "install_failed/arch=x64": 2,
		"install_failed/oem=contoso|arch=x64": 1, "install_failed/oem=fabrikam|arch=x64": 1,
		"install_succeeded/": 1, "install_succeeded/oem=other": 1, "install_succeeded/arch=x64": 1, "install_succeeded/oem=other|arch=x64": 1,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counts\n got %v\nwant %v", got, want)
	}
	// Waves are the receipts' (the server's word), not recomputed.
	for _, hc := range counts {
		if hc.Cell == "" && hc.Outcome == telemetry.InstallSucceeded && hc.Wave != 1 || hc.Cell == "oem=contoso" && hc.Wave != 0 {
			t.Fatalf("%s/%s counted in wave %d", hc.Outcome, hc.Cell, hc.Wave)
		}
	}
	// The ambient reference: installs by hour, of this deployment and of
	// every other, in a window.
	hour := health.HourOf(c.t)
	everyone := health.Hourly{hour - 2: {Failed: 1, Of: 1}, hour: {Failed: 1, Of: 1}, hour + 1: {Of: 1}}
	for _, w := range []struct {
		id       string
		others   bool
		from, to time.Time
		want     health.Hourly
	}{
		{d.ID, false, c.t.Add(-3 * time.Hour), c.t.Add(3 * time.Hour), everyone},
		{"dep_other", true, c.t.Add(-3 * time.Hour), c.t.Add(3 * time.Hour), everyone},
		{d.ID, true, c.t.Add(-3 * time.Hour), c.t.Add(3 * time.Hour), health.Hourly{}},
		{"dep_other", false, c.t.Add(-3 * time.Hour), c.t.Add(3 * time.Hour), health.Hourly{}},
		// Whole hours: from's to to's.
		{d.ID, false, c.t.Add(time.Hour), c.t.Add(2 * time.Hour), health.Hourly{hour + 1: {Of: 1}}},
		{d.ID, false, c.t.Add(-2 * time.Hour), c.t.Add(-time.Hour), health.Hourly{hour - 2: {Failed: 1, Of: 1}}},
		{d.ID, false, c.t.Add(-5 * time.Hour), c.t.Add(-3 * time.Hour), health.Hourly{}},
	} {
		if got, err := s.HourlyInstalls(ctx, w.id, w.others, nil, w.from, w.to); err != nil || !reflect.DeepEqual(got, w.want) {
			t.Fatalf("HourlyInstalls(%s, others %t, %s, %s) = %v, %v; want %v", w.id, w.others, w.from, w.to, got, err, w.want)
		}
	}
	// The migration that made the hourly rollup fills it from the outcomes
	// counted before, as the aggregator would have.
	if err := s.RebuildInstallHours(ctx); err != nil {
		t.Fatal(err)
	}
	// The migrations of the aggregator's tables (SQLite rebuilds them
	// clustered on their keys) keep every row, down and up.
	before, err := s.HealthCounts(ctx, d.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Remigrate(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if after, err := s.HealthCounts(ctx, d.ID, false); err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("health counts after remigrating = %v, %v; want %v", after, err, before)
	}
	if got, err := s.HourlyInstalls(ctx, d.ID, false, nil, c.t.Add(-3*time.Hour), c.t.Add(3*time.Hour)); err != nil || !reflect.DeepEqual(got, everyone) {
		t.Fatalf("HourlyInstalls after the backfill = %v, %v; want %v", got, err, everyone)
	}
	// The counted outcomes (stored by number since migration 23) keep
	// their deployment, device, outcome and time, and still count once.
	if _, after, err := s.DeviceHistory(ctx, "d1", []string{d.ID}); err != nil || !reflect.DeepEqual(after, outcomes) {
		t.Fatalf("DeviceHistory(d1) after remigrating = %+v, %v; want %+v", after, err, outcomes)
	}
	if tally, err := s.RecordEvents(ctx, batch, cohort); err != nil || tally != (store.Tally{Repeats: 4, Unattributed: 2}) {
		t.Fatalf("redelivery after remigrating: %+v, %v", tally, err)
	}
	// Per cohort cell, by the registry's attributes of each device.
	if err := s.RecordSightings(ctx, []registry.Seen{
		{DeviceID: "d1", Attributes: map[string]string{"oem": "contoso", "arch": "x64"}, At: c.t, CheckIns: 1},
		{DeviceID: "d2", Attributes: map[string]string{"oem": "fabrikam", "arch": "x64"}, At: c.t, CheckIns: 1},
		{DeviceID: "d3", Attributes: map[string]string{"oem": "northwind", "arch": "x64"}, At: c.t, CheckIns: 1},
		// An offer made at a check-in.
		{DeviceID: "d4", At: c.t, CheckIns: 1, Offers: []registry.Offer{{DeploymentID: d.ID, Wave: 0, At: c.t}}},
	}); err != nil {
		t.Fatal(err)
	}
	// A later offer to d1: the first record stands.
	if err := s.RecordSightings(ctx, []registry.Seen{{DeviceID: "d1", Attributes: map[string]string{"oem": "contoso", "arch": "x64"},
		At: c.t, CheckIns: 1, Offers: []registry.Offer{{DeploymentID: d.ID, Wave: 1, At: c.t}}}}); err != nil {
		t.Fatal(err)
	}
	if offers, err := s.OfferCounts(ctx, d.ID); err != nil || !reflect.DeepEqual(offers, map[int]int64{0: 2, 1: 2}) {
		t.Fatalf("OfferCounts after sightings = %v, %v", offers, err)
	}
	if o, err := s.Offered(ctx, d.ID, "d1"); err != nil || o.Wave != 0 || !o.At.Equal(c.t.Add(-time.Minute)) {
		t.Fatalf("Offered(d1) = %+v, %v", o, err)
	}
	if _, err := s.Offered(ctx, d.ID, "d7"); !fault.Is(err, fault.NotFound) {
		t.Fatalf("Offered(never offered) = %v", err)
	}
	for cell, want := range map[string]health.Hourly{
		"oem=contoso":            {hour: {Failed: 1, Of: 1}},
		"arch=x64":               everyone,
		"oem=northwind|arch=x64": {hour + 1: {Of: 1}},
		"oem=other":              {},
	} {
		got, err := s.HourlyInstalls(ctx, "dep_other", true, telemetry.ParseCell(cell), c.t.Add(-3*time.Hour), c.t.Add(3*time.Hour))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("HourlyInstalls(cell %s) = %v, %v; want %v", cell, got, err, want)
		}
	}
	overall, _ := s.HealthCounts(ctx, d.ID, true)
	for _, hc := range overall {
		if hc.Cell != "" {
			t.Fatalf("overall counts include cell %q", hc.Cell)
		}
	}
	// A batch that fails after numbering a new device and sending its
	// outcomes commits nothing, and neither its number nor its outcomes are
	// remembered (PostgreSQL never gives the number again): the next batch
	// numbers the device anew, counts the outcome, and it is in the
	// device's history.
	failing := []telemetry.Event{ev("e8", "d8", telemetry.Offered, "contoso"), ev("e7", "d8", "no_such_outcome", "contoso")}
	if _, err := s.RecordEvents(ctx, failing, cohort); err == nil {
		t.Fatal("an outcome with no code was counted")
	}
	if tally, err := s.RecordEvents(ctx, []telemetry.Event{ev("e8", "d8", telemetry.Offered, "contoso")}, cohort); err != nil || tally.Counted != 1 {
		t.Fatalf("after a failed batch: %+v, %v", tally, err)
	}
	if _, outcomes, err := s.DeviceHistory(ctx, "d8", []string{d.ID}); err != nil || len(outcomes) != 1 || outcomes[0].Outcome != string(telemetry.Offered) {
		t.Fatalf("DeviceHistory(d8) after a failed batch = %+v, %v", outcomes, err)
	}
}

func testTokens(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	secret, tok := access.NewToken(access.NewTokenRequest{Name: "ci", Role: access.RolePublisher, Products: []string{"os"}, TTL: time.Hour}, "tester", c.t)
	if err := s.CreateToken(ctx, tok, "tester"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.CreateToken(ctx, tok, "tester"), fault.Conflict)
	got, err := s.TokenByHash(ctx, access.Hash(secret))
	if err != nil || got.ID != tok.ID || got.Role != access.RolePublisher || !slices.Equal(got.Products, []string{"os"}) ||
		got.ExpiresAt == nil || !got.ExpiresAt.Equal(*tok.ExpiresAt) || got.CreatedBy != "tester" {
		t.Fatalf("TokenByHash = %+v, %v", got, err)
	}
	_, err = s.TokenByHash(ctx, access.Hash(secret+"x"))
	wantKind(t, err, fault.NotFound)
	if n, _ := s.CountTokens(ctx); n != 1 {
		t.Fatalf("CountTokens = %d", n)
	}
	c.t = c.t.Add(time.Minute)
	revoked, err := s.RevokeToken(ctx, tok.ID, "tester", "rotated")
	if err != nil || revoked.RevokedAt == nil || !revoked.RevokedAt.Equal(c.t) {
		t.Fatalf("RevokeToken = %+v, %v", revoked, err)
	}
	if _, err := access.Check(revoked, secret, c.t); fault.KindOf(err) != fault.Unauthorized {
		t.Fatalf("revoked token checks as %v", err)
	}
	_, err = s.RevokeToken(ctx, "tok_00000000000000000000000000", "tester", "")
	wantKind(t, err, fault.NotFound)
	ts, err := s.Tokens(ctx)
	if err != nil || len(ts) != 1 || ts[0].RevokedAt == nil {
		t.Fatalf("Tokens = %+v, %v", ts, err)
	}
	// Creation and revocation are audited, once each (revoking twice is a no-op).
	s.RevokeToken(ctx, tok.ID, "tester", "again")
	es, err := s.AuditEntries(ctx, store.AuditFilter{Action: "token.*"})
	if err != nil || len(es) != 2 || es[0].Action != "token.revoke" || es[0].Reason != "rotated" || es[1].Action != "token.create" {
		t.Fatalf("audit entries = %+v, %v", es, err)
	}
	if strings.Contains(string(es[1].After), tok.Hash) || strings.Contains(string(es[1].After), secret) {
		t.Fatalf("the audit log holds the token's secret or hash: %s", es[1].After)
	}
}

// testAudit: the chain verifies; editing any column of any entry, deleting
// an entry in the middle or at the end, or rewriting the head is detected.
func testAudit(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	for i := range 5 {
		c.t = c.t.Add(time.Second)
		if err := s.Audit(ctx, fmt.Sprintf("token:t%d", i), audit.Change{Action: "test.act", Target: fmt.Sprintf("x%d", i),
			Before: map[string]int{"n": i}, After: map[string]int{"n": i + 1}, Reason: "why"}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.Intact || rep.Entries != 5 {
		t.Fatalf("fresh chain: %+v, %v", rep, err)
	}
	anchor := rep.Head
	es, _ := s.AuditEntries(ctx, store.AuditFilter{Actor: "token:t3"})
	if len(es) != 1 || es[0].Seq != 4 || string(es[0].After) != `{"n":4}` || !es[0].At.Equal(c.t.Add(-time.Second)) {
		t.Fatalf("filtered entries = %+v", es)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if err := s.InTx(ctx, func(tx *store.Tx) error { _, err := tx.SQL().ExecContext(ctx, q, args...); return err }); err != nil {
			t.Fatal(err)
		}
	}
	snapshot := func() []audit.Entry { es, _ := s.AuditEntries(ctx, store.AuditFilter{}); return es }
	restore := func(es []audit.Entry) {
		exec(`DELETE FROM audit_log`)
		for _, e := range es {
			exec(`INSERT INTO audit_log (seq, at, actor, action, target, before_state, after_state, reason, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, e.Seq, e.At, e.Actor, e.Action, e.Target, string(e.Before), string(e.After), e.Reason, e.Prev, e.Hash)
		}
		exec(`UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1`, anchor.Seq, anchor.Hash)
		if rep, _ := s.VerifyAudit(ctx); !rep.Intact {
			t.Fatalf("restore did not restore: %v", rep.Problems)
		}
	}
	orig := snapshot()
	for _, tamper := range []struct{ name, sql string }{
		{"actor", `UPDATE audit_log SET actor = 'token:someone-else' WHERE seq = 2`},
		{"action", `UPDATE audit_log SET action = 'test.other' WHERE seq = 2`},
		{"target", `UPDATE audit_log SET target = 'y' WHERE seq = 2`},
		{"before", `UPDATE audit_log SET before_state = '{"n":9}' WHERE seq = 2`},
		{"after", `UPDATE audit_log SET after_state = '{"n":9}' WHERE seq = 2`},
		{"reason", `UPDATE audit_log SET reason = '' WHERE seq = 2`},
		{"time", `UPDATE audit_log SET at = at + INTERVAL '1 second' WHERE seq = 2`},
		{"delete middle", `DELETE FROM audit_log WHERE seq = 3`},
		{"delete newest", `DELETE FROM audit_log WHERE seq = 5`},
		{"delete oldest", `DELETE FROM audit_log WHERE seq = 1`},
		{"rehash one", `UPDATE audit_log SET reason = 'x', hash = '` + strings.Repeat("ab", 32) + `' WHERE seq = 2`},
	} {
		q := tamper.sql
		if s.Dialect() == store.SQLite && tamper.name == "time" {
			q = `UPDATE audit_log SET at = '2020-01-01 00:00:00+00:00' WHERE seq = 2`
		}
		exec(q)
		rep, err := s.VerifyAudit(ctx)
		if err != nil || rep.Intact || len(rep.Problems) == 0 {
			t.Errorf("tampering with %s went unnoticed: %+v, %v", tamper.name, rep, err)
		}
		restore(orig)
	}
	// A wholesale rewrite that keeps the chain consistent is caught by an
	// anchor recorded earlier.
	exec(`DELETE FROM audit_log`)
	exec(`UPDATE audit_head SET seq = 0, hash = $1 WHERE id = 1`, audit.Genesis)
	for range 5 {
		s.Audit(ctx, "token:forger", audit.Change{Action: "test.act", Target: "x"})
	}
	if rep, _ := s.VerifyAudit(ctx); !rep.Intact {
		t.Fatalf("the forged chain should be self-consistent: %v", rep.Problems)
	}
	if rep, _ := s.VerifyAudit(ctx, anchor); rep.Intact {
		t.Fatal("a rewritten chain passed verification against an earlier anchor")
	}
}

func testEnrollment(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	secret, k := access.NewEnrollmentKey("fleet", "tester", c.t, 0)
	if err := s.CreateEnrollmentKey(ctx, k, "tester"); err != nil {
		t.Fatal(err)
	}
	got, err := s.EnrollmentKeyByHash(ctx, access.Hash(secret))
	if err != nil || got.ID != k.ID || got.RevokedAt != nil {
		t.Fatalf("EnrollmentKeyByHash = %+v, %v", got, err)
	}
	if got, err = s.RevokeEnrollmentKey(ctx, k.ID, "tester", "leaked"); err != nil || got.RevokedAt == nil {
		t.Fatalf("RevokeEnrollmentKey = %+v, %v", got, err)
	}
	if err := access.CheckEnrollment(got, c.t); fault.KindOf(err) != fault.Unauthorized {
		t.Fatalf("revoked enrollment key checks as %v", err)
	}
	gen, _ := s.Generation(ctx)
	if err := s.RevokeDevice(ctx, "d1", "tester", "stolen"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevice(ctx, "d1", "tester", "again"); err != nil {
		t.Fatal(err)
	}
	v, err := s.View(ctx)
	if err != nil || !v.Revoked["d1"] || v.Revoked["d2"] || v.Generation != gen+1 {
		t.Fatalf("view revoked = %v (generation %d from %d), %v", v.Revoked, v.Generation, gen, err)
	}
	if es, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "device.revoke"}); len(es) != 1 || es[0].Target != "d1" {
		t.Fatalf("device revocation audit = %+v", es)
	}
	testDeviceEnrollment(t, s, c)
	k1, _ := s.Secret(ctx, "k")
	k2, _ := s.Secret(ctx, "k")
	if len(k1) != 32 || !slices.Equal(k1, k2) {
		t.Fatalf("Secret not stable: %x %x", k1, k2)
	}
}

// testDeviceEnrollment: a device id enrolls once per generation; a reset
// starts the next generation and lets it enroll again with any key; a
// key's quota holds; enrollments, refusals and resets are audited.
func testDeviceEnrollment(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	_, k := access.NewEnrollmentKey("quota", "tester", c.t, 0)
	k.MaxDevices = 3
	_, other := access.NewEnrollmentKey("other", "tester", c.t, 0)
	for _, key := range []access.EnrollmentKey{k, other} {
		if err := s.CreateEnrollmentKey(ctx, key, "tester"); err != nil {
			t.Fatal(err)
		}
	}
	if gen, err := s.EnrollDevice(ctx, "e1", k); err != nil || gen != 0 {
		t.Fatalf("EnrollDevice = %d, %v", gen, err)
	}
	// Again, with either key: refused, and the quota is not spent.
	for _, key := range []access.EnrollmentKey{k, other} {
		if _, err := s.EnrollDevice(ctx, "e1", key); !fault.Is(err, fault.Conflict) {
			t.Fatalf("re-enrollment with %s: %v", key.Name, err)
		}
	}
	for _, id := range []string{"e2", "e3"} {
		if _, err := s.EnrollDevice(ctx, id, k); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EnrollDevice(ctx, "e4", k); !fault.Is(err, fault.Forbidden) {
		t.Fatalf("past the quota: %v", err)
	}
	if got, _ := s.EnrollmentKeyByHash(ctx, k.Hash); got.Enrolled != 3 || got.MaxDevices != 3 {
		t.Fatalf("key after 3 enrollments: %+v", got)
	}
	gen0, _ := s.Generation(ctx)
	gen, err := s.ResetDevice(ctx, "e1", "admin", "reflashed")
	if err != nil || gen != 1 {
		t.Fatalf("ResetDevice = %d, %v", gen, err)
	}
	v, err := s.View(ctx)
	if err != nil || v.Generations["e1"] != 1 || v.Generations["e2"] != 0 || v.Generation != gen0+1 {
		t.Fatalf("view generations = %v (catalog generation %d from %d), %v", v.Generations, v.Generation, gen0, err)
	}
	// The reset gave e1's place back, and e1 enrolls again with another key.
	if got, _ := s.EnrollmentKeyByHash(ctx, k.Hash); got.Enrolled != 2 {
		t.Fatalf("key after a reset: %+v", got)
	}
	if gen, err := s.EnrollDevice(ctx, "e1", other); err != nil || gen != 1 {
		t.Fatalf("enrollment after reset = %d, %v", gen, err)
	}
	if _, err := s.EnrollDevice(ctx, "e1", k); !fault.Is(err, fault.Conflict) {
		t.Fatalf("second enrollment after reset: %v", err)
	}
	// A device never enrolled (credentials from before enrollments were
	// recorded) is reset to generation 1.
	if gen, err := s.ResetDevice(ctx, "legacy", "admin", "lost"); err != nil || gen != 1 {
		t.Fatalf("reset of an unenrolled device = %d, %v", gen, err)
	}
	for action, want := range map[string]int{"device.enroll": 4, "device.enroll_refused": 4, "device.reset": 2} {
		es, err := s.AuditEntries(ctx, store.AuditFilter{Action: action})
		if err != nil || len(es) != want {
			t.Fatalf("audit %s: %d entries, want %d (%v)", action, len(es), want, err)
		}
	}
	es, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "device.enroll_refused", Target: "e4"})
	if len(es) != 1 || es[0].Actor != store.EnrollmentActor(k.ID) || !strings.Contains(es[0].Reason, "quota") {
		t.Fatalf("quota refusal audit = %+v", es)
	}
}

func testTUFMetadata(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	_, _, err := s.LatestTUF(ctx, "root")
	wantKind(t, err, fault.NotFound)
	err = s.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.LockTUF(ctx); err != nil {
			return err
		}
		for v := int64(1); v <= 3; v++ {
			if err := tx.PutTUF(ctx, "root", v, []byte(fmt.Sprintf(`{"v":%d}`, v)), c.t.Add(time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, body, err := s.LatestTUF(ctx, "root")
	if err != nil || v != 3 || string(body) != `{"v":3}` {
		t.Fatalf("LatestTUF = %d %s %v", v, body, err)
	}
	if b, err := s.TUFVersion(ctx, "root", 2); err != nil || string(b) != `{"v":2}` {
		t.Fatalf("TUFVersion = %s %v", b, err)
	}
	err = s.InTx(ctx, func(tx *store.Tx) error { return tx.PutTUF(ctx, "root", 2, []byte("{}"), c.t) })
	wantKind(t, err, fault.Conflict)
	if g, _ := s.TUFGeneration(ctx); g != 1 {
		t.Fatalf("TUFGeneration = %d", g)
	}
}

func testDevices(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	t0 := c.t
	err := s.RecordSightings(ctx, []registry.Seen{
		{DeviceID: "d1", Attributes: map[string]string{"arch": "x64"}, Installed: map[string]string{"agent": "1.0"}, At: t0, CheckIns: 2},
		{DeviceID: "d2", At: t0, CheckIns: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A later sighting replaces attributes; an older one only adds its count.
	s.RecordSightings(ctx, []registry.Seen{{DeviceID: "d1", Attributes: map[string]string{"arch": "arm64"}, At: t0.Add(time.Minute), CheckIns: 1}})
	s.RecordSightings(ctx, []registry.Seen{{DeviceID: "d1", Attributes: map[string]string{"arch": "old"}, At: t0.Add(-time.Minute), CheckIns: 1}})
	d, err := s.Device(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Attributes["arch"] != "arm64" || d.CheckIns != 4 || !d.FirstSeen.Equal(t0) || !d.LastSeen.Equal(t0.Add(time.Minute)) || len(d.Installed) != 0 {
		t.Fatalf("device = %+v", d)
	}
	if n, _ := s.CountDevices(ctx); n != 2 {
		t.Fatalf("CountDevices = %d", n)
	}
	_, err = s.Device(ctx, "nope")
	wantKind(t, err, fault.NotFound)
}

func testAgentPlans(t *testing.T, s *store.Store, c *clock) {
	ctx := context.Background()
	p := store.AgentPlan{Hash: "plan_1", TokenID: "tok_a", Action: "advance", Target: "dep_1", Body: `{}`, Exposure: 40, CreatedAt: c.t}
	if err := s.SavePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePlan(ctx, p); err != nil {
		t.Fatalf("saving the same plan again: %v", err)
	}
	got, err := s.Plan(ctx, "plan_1")
	if err != nil || got.Exposure != 40 || got.AppliedAt != nil || !got.CreatedAt.Equal(c.t) {
		t.Fatalf("Plan = %+v, %v", got, err)
	}
	_, err = s.Plan(ctx, "plan_x")
	wantKind(t, err, fault.NotFound)
	if err := s.MarkPlanApplied(ctx, "plan_1"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, s.MarkPlanApplied(ctx, "plan_1"), fault.Conflict)
	s.SavePlan(ctx, store.AgentPlan{Hash: "plan_2", TokenID: "tok_a", Action: "advance", Target: "dep_1", Body: `{}`, Exposure: 7, CreatedAt: c.t})
	s.MarkPlanApplied(ctx, "plan_2")
	s.SavePlan(ctx, store.AgentPlan{Hash: "plan_3", TokenID: "tok_a", Action: "advance", Target: "dep_2", Body: `{}`, Exposure: 100, CreatedAt: c.t})
	s.MarkPlanApplied(ctx, "plan_3")
	s.SavePlan(ctx, store.AgentPlan{Hash: "plan_4", TokenID: "tok_a", Action: "advance", Target: "dep_1", Body: `{}`, Exposure: 1000, CreatedAt: c.t})
	if n, err := s.ExposureSpent(ctx, "tok_a", "dep_1", c.t.Add(-time.Hour)); err != nil || n != 47 {
		t.Fatalf("ExposureSpent = %d, %v (applied plans for dep_1 only)", n, err)
	}
	if n, _ := s.ExposureSpent(ctx, "tok_a", "dep_1", c.t.Add(time.Hour)); n != 0 {
		t.Fatalf("ExposureSpent after the window = %d", n)
	}
	a, err := s.RequestApproval(ctx, store.Approval{ID: "apr_1", PlanHash: "plan_4", TokenID: "tok_a", Reason: "over budget"}, "token:tok_a(agent)")
	if err != nil || a.Status != "pending" {
		t.Fatalf("RequestApproval = %+v, %v", a, err)
	}
	if _, err := s.RequestApproval(ctx, store.Approval{ID: "apr_2", PlanHash: "plan_4", TokenID: "tok_a"}, "x"); err == nil {
		t.Fatal("a second request for one plan was filed")
	}
	if a, err = s.ApprovalForPlan(ctx, "plan_4"); err != nil || a.ID != "apr_1" || a.Exposure != 1000 || a.Action != "advance" {
		t.Fatalf("ApprovalForPlan = %+v, %v", a, err)
	}
	_, err = s.DecideApproval(ctx, "apr_1", "approved", "applied", "token:h(alice)", "", "")
	wantKind(t, err, fault.Conflict)
	if a, err = s.DecideApproval(ctx, "apr_1", "pending", "approved", "token:h(alice)", "fine", ""); err != nil || a.Status != "approved" || a.DecidedBy != "token:h(alice)" || a.DecidedAt == nil {
		t.Fatalf("approve = %+v, %v", a, err)
	}
	if a, err = s.DecideApproval(ctx, "apr_1", "approved", "applied", "token:h(alice)", "fine", `{"ok":true}`); err != nil || a.Status != "applied" || a.Result != `{"ok":true}` {
		t.Fatalf("apply = %+v, %v", a, err)
	}
	if as, _ := s.Approvals(ctx, "applied"); len(as) != 1 {
		t.Fatalf("Approvals(applied) = %+v", as)
	}
	if es, _ := s.AuditEntries(ctx, store.AuditFilter{Action: "approval.*"}); len(es) != 3 || es[0].Action != "approval.applied" || es[2].Actor != "token:tok_a(agent)" {
		t.Fatalf("approval audit = %+v", es)
	}
}
