package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/telemetry"
	"github.com/ringmaster/ringmaster/internal/version"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type fixture struct {
	store *store.Store
	ctl   *controller.Controller
	clock *clock
	rules *delivery.RuleCache
}

func newFixture(t *testing.T, dsn string) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)}
	s, err := store.Open(context.Background(), dsn, store.Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	env, err := targeting.NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctl := controller.New(s, env, alerts.New(nil, slog.New(slog.DiscardHandler), c.now), slog.New(slog.DiscardHandler), c.now, time.Minute, func(context.Context) {})
	return &fixture{store: s, ctl: ctl, clock: c, rules: delivery.NewRuleCache(env)}
}

// publish puts a published update straight into the store.
func (f *fixture) publish(t *testing.T, product, ver string) catalog.Update {
	t.Helper()
	ctx := context.Background()
	f.store.PutProduct(ctx, catalog.NewProduct{Name: product})
	sha := fmt.Sprintf("%064x", len(product)*1000+len(ver))
	nu := catalog.NewUpdate{Product: product, Version: ver, Payloads: []catalog.NewPayload{{Name: "p.bin", SHA256: sha, Size: 1}}}
	nu.Normalize()
	u, _, err := f.store.CreateUpdate(ctx, nu, version.MustParse(ver), func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	err = f.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetPayloadState(ctx, u.ID, sha, catalog.PayloadUploaded, catalog.PayloadStored); err != nil {
			return err
		}
		return tx.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublished, "")
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) snapshot(t *testing.T) *delivery.Snapshot {
	t.Helper()
	v, err := f.store.View(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return delivery.NewSnapshot(v, f.clock.t, f.rules)
}

func devices(n int, product, ver string) []delivery.CheckIn {
	out := make([]delivery.CheckIn, n)
	for i := range out {
		out[i] = delivery.CheckIn{DeviceID: fmt.Sprintf("device-%05d", i), Attributes: map[string]string{},
			Installed: map[string]version.Version{product: version.MustParse(ver)}}
	}
	return out
}

func offered(s *delivery.Snapshot, devs []delivery.CheckIn, now time.Time) int {
	n := 0
	for _, d := range devs {
		n += len(s.Offers(d, now))
	}
	return n
}

// TestSimulatedRollout runs a 10,000-device deployment with waves
// 1/10/50/100 and 24 h bakes through the real controller and store, in
// simulated time, to completion; at every wave the share of devices offered
// is within statistical tolerance of the plan, and exposure only grows.
func TestSimulatedRollout(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.DSN(t))
			ctx := context.Background()
			u := f.publish(t, "agent", "2.0")
			plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 1}, {Percent: 10}, {Percent: 50}, {Percent: 100}},
				Bake: rollout.Duration(24 * time.Hour), NoGate: true}
			d, _, err := f.ctl.Deploy(ctx, u.ID, plan, "test")
			if err != nil {
				t.Fatal(err)
			}
			devs := devices(10000, "agent", "1.0")
			seen := map[float64]bool{}
			prev := 0
			for hour := 0; hour <= 24*5; hour++ {
				f.clock.t = f.clock.t.Add(time.Hour)
				if err := f.ctl.Tick(ctx, f.clock.t); err != nil {
					t.Fatal(err)
				}
				d, _ = f.store.Deployment(ctx, d.ID)
				snap := f.snapshot(t)
				got := offered(snap, devs, f.clock.t)
				if got < prev {
					t.Fatalf("hour %d: %d devices offered, fewer than the %d before", hour, got, prev)
				}
				prev = got
				p := d.Percent / 100
				want, sd := float64(len(devs))*p, math.Sqrt(float64(len(devs))*p*(1-p))
				if math.Abs(float64(got)-want) > 4*sd+1 {
					t.Fatalf("hour %d, wave %d at %g%%: %d of %d offered, want %.0f ± %.0f", hour, d.Wave+1, d.Percent, got, len(devs), want, 4*sd)
				}
				seen[d.Percent] = true
				if d.State == rollout.Completed {
					break
				}
			}
			if d.State != rollout.Completed || !seen[1] || !seen[10] || !seen[50] || !seen[100] || prev != len(devs) {
				t.Fatalf("rollout ended %s at %g%% with %d offered; waves seen %v", d.State, d.Percent, prev, seen)
			}
			evs, _ := f.store.DeploymentEvents(ctx, d.ID)
			var kinds []string
			for _, e := range evs {
				kinds = append(kinds, fmt.Sprintf("%s@%g", e.Kind, e.Percent))
			}
			want := "[created@0 wave_started@1 wave_started@10 wave_started@50 wave_started@100 completed@100]"
			if fmt.Sprint(kinds) != want {
				t.Fatalf("events %v, want %s", kinds, want)
			}
			// Each wave baked a full day: the rollout took three bakes plus the last.
			if el := evs[len(evs)-1].At.Sub(evs[0].At); el < 96*time.Hour || el > 97*time.Hour {
				t.Fatalf("rollout took %s, want 96h", el)
			}
		})
	}
}

// TestCommandsReachDevices: pause stops offers at the next snapshot, resume
// restores them, approval gates waves, and a refused command changes nothing.
func TestCommandsReachDevices(t *testing.T) {
	f := newFixture(t, dbtest.SQLite(t))
	ctx := context.Background()
	u := f.publish(t, "agent", "2.0")
	plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 50}, {Percent: 100}}, Bake: rollout.Duration(time.Hour), RequireApproval: true, NoGate: true}
	d, _, err := f.ctl.Deploy(ctx, u.ID, plan, "alice")
	if err != nil || d.State != rollout.Scheduled || !d.AwaitingApproval {
		t.Fatalf("deploy = %+v, %v", d, err)
	}
	devs := devices(2000, "agent", "1.0")
	if n := offered(f.snapshot(t), devs, f.clock.t); n != 0 {
		t.Fatalf("%d offered before approval", n)
	}
	if d, err = f.ctl.Command(ctx, d.ID, rollout.Approve, "alice", "looks good"); err != nil || d.State != rollout.Running || d.Percent != 50 {
		t.Fatalf("approve = %+v, %v", d, err)
	}
	half := offered(f.snapshot(t), devs, f.clock.t)
	if half < 850 || half > 1150 {
		t.Fatalf("%d of 2000 offered at 50%%", half)
	}
	if _, err := f.ctl.Command(ctx, d.ID, rollout.Pause, "bob", "crash spike"); err != nil {
		t.Fatal(err)
	}
	if n := offered(f.snapshot(t), devs, f.clock.t); n != 0 {
		t.Fatalf("%d offered while paused", n)
	}
	// Time passes while paused: the bake does not advance.
	f.clock.t = f.clock.t.Add(3 * time.Hour)
	f.ctl.Tick(ctx, f.clock.t)
	if d, err = f.ctl.Command(ctx, d.ID, rollout.Resume, "bob", "false alarm"); err != nil || d.State != rollout.Running || d.Wave != 0 {
		t.Fatalf("resume = %+v, %v", d, err)
	}
	if n := offered(f.snapshot(t), devs, f.clock.t); n != half {
		t.Fatalf("%d offered after resume, %d before the pause", n, half)
	}
	// The second wave still needs approval, even after its bake.
	f.clock.t = f.clock.t.Add(2 * time.Hour)
	f.ctl.Tick(ctx, f.clock.t)
	if d, _ = f.store.Deployment(ctx, d.ID); d.Wave != 0 || !d.AwaitingApproval {
		t.Fatalf("after bake without approval: %+v", d)
	}
	if _, err := f.ctl.Command(ctx, d.ID, rollout.Advance, "bob", "hurry"); !fault.Is(err, fault.Conflict) {
		t.Fatalf("advance without approval: %v", err)
	}
	if d, err = f.ctl.Command(ctx, d.ID, rollout.Approve, "carol", "go"); err != nil || d.Wave != 1 || d.Percent != 100 {
		t.Fatalf("second approval = %+v, %v", d, err)
	}
	if n := offered(f.snapshot(t), devs, f.clock.t); n != len(devs) {
		t.Fatalf("%d offered at 100%%", n)
	}
	if d, err = f.ctl.Command(ctx, d.ID, rollout.Halt, "dave", "bad"); err != nil || d.State != rollout.Halted {
		t.Fatalf("halt = %+v, %v", d, err)
	}
	if _, err := f.ctl.Command(ctx, d.ID, rollout.Resume, "dave", ""); !fault.Is(err, fault.Conflict) {
		t.Fatalf("resume after halt: %v", err)
	}
	if n := offered(f.snapshot(t), devs, f.clock.t); n != 0 {
		t.Fatalf("%d offered after halt", n)
	}
	evs, _ := f.store.DeploymentEvents(ctx, d.ID)
	var who []string
	for _, e := range evs {
		if e.Actor != rollout.ControllerActor {
			who = append(who, e.Kind+":"+e.Actor+":"+e.Detail)
		}
	}
	want := "[created:alice: approval_requested:alice:wave 1 (50%) needs approval approved:alice:looks good wave_started:alice:50% " +
		"paused:bob:crash spike resumed:bob:false alarm approved:carol:go wave_started:carol:100% halted:dave:bad]"
	if fmt.Sprint(who) != want {
		t.Fatalf("events by people:\n got %v\nwant %s", who, want)
	}
}

// TestGateTimeMatchesTheAmbientReference: the fleet's other installs that
// the gate compares a release with are matched hour by hour with the
// release's own installs (by the time each outcome happened, as devices
// report it), against the week before the release started, never counting
// the release itself: an incident in the hours the release installed
// raises the baseline by as much as it raised the other installs then,
// not by its mean over the whole rollout.
func TestGateTimeMatchesTheAmbientReference(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f := newFixture(t, b.DSN(t))
			ctx := context.Background()
			t0 := f.clock.t
			plan := rollout.Plan{Waves: []rollout.Wave{{Percent: 100}}, NoGate: true}
			f.clock.t = t0.Add(-8 * 24 * time.Hour)
			other, _, err := f.ctl.Deploy(ctx, f.publish(t, "drivers", "2.0").ID, plan, "test")
			if err != nil {
				t.Fatal(err)
			}
			f.clock.t = t0
			release, _, err := f.ctl.Deploy(ctx, f.publish(t, "agent", "2.0").ID, plan, "test")
			if err != nil {
				t.Fatal(err)
			}
			var events []telemetry.Event
			mine, others, before := health.Hourly{}, health.Hourly{}, health.Hourly{}
			install := func(d rollout.Deployment, n int, at time.Time, failed bool, into health.Hourly) {
				typ := telemetry.InstallSucceeded
				if failed {
					typ = telemetry.InstallFailed
				}
				id := fmt.Sprintf("%s-%05d", d.Product, n)
				events = append(events, telemetry.Event{ID: "e-" + id, DeviceID: id, UpdateID: d.UpdateID, DeploymentID: d.ID,
					Type: typ, Time: at, Received: at, OfferedAt: at.Add(-time.Minute)})
				into.Count(health.HourOf(at), string(typ), 1)
			}
			n := 0
			// The week before: other installs fail 2%.
			for i := range 1500 {
				install(other, n, t0.Add(-3*24*time.Hour+time.Duration(i)*time.Minute), i%50 == 0, before)
				n++
			}
			// During the rollout: 8% in hours 10-20, 2% around them.
			for h := range 30 {
				for i := range 100 {
					fail := i%50 == 0
					if h >= 10 && h < 20 {
						fail = i%25 < 2
					}
					install(other, n, t0.Add(time.Duration(h)*time.Hour+time.Duration(i)*30*time.Second), fail, others)
					n++
				}
			}
			// The release installs in hours 12-17, failing as the others did.
			for i := range 1200 {
				install(release, n, t0.Add(12*time.Hour+time.Duration(i)*15*time.Second), i%25 < 2, mine)
				n++
			}
			if tally, err := f.store.RecordEvents(ctx, events, store.Cohort{}); err != nil || tally.Counted != len(events) {
				t.Fatalf("RecordEvents = %+v, %v", tally, err)
			}
			f.clock.t = t0.Add(30 * time.Hour)
			d, err := f.store.Deployment(ctx, release.ID)
			if err != nil {
				t.Fatal(err)
			}
			r, err := f.ctl.Gate(ctx, &d, false)
			if err != nil {
				t.Fatal(err)
			}
			base := health.Baseline{Failure: 0.02}
			_, want := health.AdjustForAmbient(base, health.TimeMatched(mine, others), before.Rate(math.MinInt64, math.MaxInt64))
			_, diluted := health.AdjustForAmbient(base, others.Rate(math.MinInt64, math.MaxInt64), before.Rate(math.MinInt64, math.MaxInt64))
			if want.Factor <= diluted.Factor*1.1 {
				t.Fatalf("the fixture does not tell time matching apart: factor %.2f against %.2f over the whole rollout", want.Factor, diluted.Factor)
			}
			if !strings.Contains(r.Baseline.Source, fmt.Sprintf("× %.2f for the fleet's other installs", want.Factor)) {
				t.Fatalf("baseline %q, want the other installs' factor %.2f (%.2f%% now, time-matched; %.2f over the whole rollout)",
					r.Baseline.Source, want.Factor, 100*want.Now.Value, diluted.Factor)
			}
		})
	}
}
