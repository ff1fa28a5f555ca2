package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
)

// TestForgedEvidence: on both databases, with real enrolled devices and a
// real server, a gate counts only what the server offered. Forged
// successes from enrolled ids that were never offered the update do not
// advance a gated rollout; forged failures from devices outside the
// current wave or outside the audience, or citing another device's offer
// or a time before the offer, do not pause one. Honest events from offered
// devices still advance the healthy rollout and pause the regressed one.
func TestForgedEvidence(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := ""
			if b.Name == "postgres" {
				dsn = b.DSN(t)
			}
			testForgedEvidence(t, startServer(t, dsn))
		})
	}
}

func testForgedEvidence(t *testing.T, s *server) {
	ctx := context.Background()
	fleet := s.devices(t)
	good := publishSmall(t, s, "agent", "2.0")
	healthy, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1s",
		Gate: &client.Gate{BaselineFailure: 0.10, BaselineRollback: 0.10, BaselineCrash: 0.10}})
	if err != nil {
		t.Fatal(err)
	}
	bad := publishSmall(t, s, "os", "5.0")
	regressed, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1h",
		Audience: `!("ring" in device.attributes) || device.attributes.ring != "excluded"`, Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		t.Fatal(err)
	}

	// 1. Enrolled ids that never checked in forge successes: all refused
	// as not offered, none counted, the waiting wave stays.
	forgedOK := installEvents(good, 300, "forged-ok", 0)
	for i := range forgedOK {
		forgedOK[i].DeviceID = fmt.Sprintf("sybil-%03d", i)
	}
	r, err := fleet.sendUncited(ctx, forgedOK)
	if err != nil || r.Accepted != 0 || r.NotOffered != 300 || r.Results[0].Status != "not_offered" ||
		!strings.Contains(r.Results[0].Error, "offer_receipt is missing") {
		t.Fatalf("forged successes: %+v, %v", r.Accepted, err)
	}

	// 2. Forged failures for the regressed-to-be deployment from devices
	// the server did not offer it to: outside the current wave, and
	// outside the audience (they check in, are told no, report anyway).
	var outside, excluded []client.DeviceEvent
	for i := 0; len(outside) < 60 || len(excluded) < 40; i++ {
		id := fmt.Sprintf("probe-%04d", i)
		attrs := map[string]string{}
		if len(excluded) < 40 && i%2 == 1 {
			attrs["ring"] = "excluded"
		}
		resp, err := fleet.device(id).CheckIn(ctx, client.CheckInRequest{DeviceID: id, Attributes: attrs,
			Installed: []client.Installed{{Product: "os", Version: "4.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		e := client.DeviceEvent{EventID: "forged-" + id, DeviceID: id, UpdateID: bad.ID, DeploymentID: regressed.ID,
			Type: "install_failed", Time: time.Now().UTC(), Attributes: attrs}
		switch {
		case len(resp.Offers) > 0:
			continue // in the wave and the audience: an honest device
		case attrs["ring"] == "excluded":
			excluded = append(excluded, e)
		case len(outside) < 60:
			outside = append(outside, e)
		}
	}
	explained, err := s.admin.Explain(ctx, client.ExplainRequest{DeviceID: outside[0].DeviceID, UpdateID: bad.ID, Installed: map[string]string{"os": "4.0"}})
	if err != nil || len(explained.Decisions) != 1 || explained.Decisions[0].FailedStep != "wave" {
		t.Fatalf("explain of a device outside the wave: %+v, %v", explained.Decisions, err)
	}
	r, err = fleet.sendUncited(ctx, append(outside, excluded...))
	if err != nil || r.Accepted != 0 || r.NotOffered != 100 {
		t.Fatalf("forged failures: accepted %d, not offered %d, %v", r.Accepted, r.NotOffered, err)
	}

	// 3. Offered devices forge around their receipts: one cites another
	// device's receipt; one reports a failure from before its offer.
	offered := func(id string) client.Offer {
		t.Helper()
		resp, err := fleet.device(id).CheckIn(ctx, client.CheckInRequest{DeviceID: id, Installed: []client.Installed{{Product: "os", Version: "4.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Offers) != 1 || !strings.HasPrefix(resp.Offers[0].OfferReceipt, regressed.ID+".0.") {
			return client.Offer{}
		}
		return resp.Offers[0]
	}
	var a, b client.Offer
	var aID, bID string
	for i := 0; b.OfferReceipt == ""; i++ {
		id := fmt.Sprintf("pair-%03d", i)
		if o := offered(id); o.OfferReceipt != "" && a.OfferReceipt == "" {
			a, aID = o, id
		} else if o.OfferReceipt != "" {
			b, bID = o, id
		}
	}
	stolen := a.Event("stolen-receipt", bID, "install_failed", time.Now().UTC())
	early := b.Event("before-offer", bID, "install_failed", time.Now().Add(-30*time.Minute).UTC())
	r, err = fleet.device(bID).SendEvents(ctx, []client.DeviceEvent{stolen, early})
	if err != nil || r.NotOffered != 2 || !strings.Contains(r.Results[0].Error, "not issued for this device") ||
		!strings.Contains(r.Results[1].Error, "before the server offered") {
		t.Fatalf("receipt misuse: %+v, %v", r, err)
	}
	_ = aID

	// Several controller ticks later nothing has moved and nothing counted.
	time.Sleep(3500 * time.Millisecond)
	for _, id := range []string{healthy.ID, regressed.ID} {
		d, err := s.admin.Deployment(ctx, id)
		if err != nil || d.State != "running" || d.Wave != 0 {
			t.Fatalf("deployment %s moved on forged evidence: state %s wave %d (%v)", id, d.State, d.Wave, err)
		}
		h, err := s.admin.DeploymentHealth(ctx, id)
		if err != nil || h.Health.Overall.Devices["install_succeeded"] != 0 || h.Health.Overall.Devices["install_failed"] != 0 {
			t.Fatalf("forged evidence counted for %s: %+v, %v", id, h.Health.Overall.Devices, err)
		}
	}
	metrics := string(mustGet(t, s.url+"/metrics"))
	if !strings.Contains(metrics, `ringmaster_device_events_total{status="not_offered"} 402`) {
		t.Errorf("metrics lack 402 not_offered events:\n%s", grepLines(metrics, "ringmaster_device_events_total"))
	}

	// 4. Honest devices, checking in and citing their offers: the healthy
	// rollout advances wave by wave and completes (each wave's devices are
	// offered it once the wave opens), and its exposure is the server's
	// count of offers.
	reportUntilCompleted(t, s, healthy.ID, installEvents(good, 300, "ok", 0))
	// It may complete before every report is counted (half of a wave
	// proves it): all 300 are, in the end, in both waves.
	var h client.Health
	waitFor(t, 30*time.Second, func() bool {
		h, err = s.admin.DeploymentHealth(ctx, healthy.ID)
		return err == nil && h.Offered == 300 && h.Health.Overall.Devices["install_succeeded"] == 300
	})
	if len(h.OfferedByWave) != 2 || h.OfferedByWave[0] == 0 || h.OfferedByWave[1] == 0 || h.OfferedByWave[0]+h.OfferedByWave[1] != 300 {
		t.Fatalf("healthy rollout: offered by wave %v", h.OfferedByWave)
	}

	// 5. Honest failures from offered devices pause the regressed rollout
	// (one in four fails against a 2% baseline).
	failing := installEvents(bad, 400, "bad", 4)
	for i := range failing {
		failing[i].DeviceID = fmt.Sprintf("os-%03d", i)
	}
	r, err = fleet.send(ctx, failing)
	if err != nil || r.Accepted == 0 || r.Accepted+r.NotOffered != 400 {
		t.Fatalf("honest failures: %+v, %v", r, err)
	}
	var d client.Deployment
	waitFor(t, 60*time.Second, func() bool {
		d, _ = s.admin.Deployment(ctx, regressed.ID)
		return d.State == "paused"
	})
	if d.By != "health-gate" || !strings.Contains(d.Reason, "regressed") {
		t.Fatalf("regressed rollout: by %q, reason %q", d.By, d.Reason)
	}
	// Every accepted report is counted (the gate may have paused on part
	// of them), and only those.
	waitFor(t, 30*time.Second, func() bool {
		h, _ = s.admin.DeploymentHealth(ctx, regressed.ID)
		return h.Health.Overall.Devices["install_failed"]+h.Health.Overall.Devices["install_succeeded"] == int64(r.Accepted)
	})
	// The probes in the wave were offered it too, and did not report.
	if h.Offered < int64(r.Accepted) || h.Offered == 0 {
		t.Fatalf("regressed rollout: %d offered by the server's records, %d devices reported on their offers", h.Offered, r.Accepted)
	}
}

// reportUntilCompleted has the fleet report events (checking in first,
// citing its offers) as devices that check in every few seconds would:
// when the deployment opens a new wave, every 2 s until it completes, and
// once more after, so every device is offered it and reports.
func reportUntilCompleted(t *testing.T, s *server, depID string, events []client.DeviceEvent) {
	t.Helper()
	ctx := context.Background()
	send := func() {
		if r, err := s.devices(t).send(ctx, events); err != nil || r.Accepted+r.NotOffered != len(events) {
			t.Fatalf("send: %d accepted, %d not offered, %v", r.Accepted, r.NotOffered, err)
		}
	}
	reported, last := -2, time.Time{}
	waitFor(t, 90*time.Second, func() bool {
		d, err := s.admin.Deployment(ctx, depID)
		if err != nil || d.State == "completed" {
			return err == nil
		}
		if d.Wave != reported || time.Since(last) > 2*time.Second {
			send()
			reported, last = d.Wave, time.Now()
		}
		return false
	})
	send()
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestEnrollOnce: re-enrolling an enrolled id is refused with any key; an
// admin's reset refuses the old credential and lets a fresh enrollment
// work; a key with --max-devices 10 enrolls exactly 10 under concurrent
// requests; the audit log names every enrollment, refusal and reset.
func TestEnrollOnce(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	_, keyA, err := s.admin.CreateEnrollmentKey(ctx, "fleet-a", "")
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := s.admin.CreateEnrollmentKey(ctx, "fleet-b", "")
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.device.Enroll(ctx, keyA, "laptop-42")
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]string{"the same key": keyA, "another key": keyB} {
		if e, err := s.device.Enroll(ctx, key, "laptop-42"); !client.IsKind(err, "conflict") {
			t.Fatalf("re-enrollment with %s: %+v, %v (want 409)", name, e, err)
		}
	}
	checkIn := func(cred string) error {
		_, err := s.device.WithToken(cred).CheckIn(ctx, client.CheckInRequest{DeviceID: "laptop-42"})
		return err
	}
	if err := checkIn(first.Credential); err != nil {
		t.Fatalf("first credential: %v", err)
	}
	out, err := run(t, env, "device", "reset", "laptop-42", "--reason", "reflashed")
	if err != nil || !strings.Contains(out, "laptop-42 reset") {
		t.Fatalf("device reset: %v\n%s", err, out)
	}
	if err := checkIn(first.Credential); !client.IsKind(err, "unauthorized") {
		t.Fatalf("the credential from before the reset: %v (want 401)", err)
	}
	again, err := s.device.Enroll(ctx, keyB, "laptop-42")
	if err != nil || again.Credential == first.Credential {
		t.Fatalf("enrollment after reset: %+v, %v", again, err)
	}
	if err := checkIn(again.Credential); err != nil {
		t.Fatalf("the fresh credential: %v", err)
	}
	if _, err := s.device.Enroll(ctx, keyA, "laptop-42"); !client.IsKind(err, "conflict") {
		t.Fatalf("second enrollment after the reset: %v", err)
	}

	// A quota of 10, raced by 25 enrollments of distinct ids.
	secret, err := run(t, env, "enrollment", "create", "--name", "lab", "--max-devices", "10")
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 25 {
		wg.Go(func() {
			_, err := s.device.Enroll(ctx, secret, fmt.Sprintf("lab-%02d", i))
			switch {
			case err == nil:
				ok.Add(1)
			case client.IsKind(err, "forbidden"):
				refused.Add(1)
			default:
				t.Errorf("enroll lab-%02d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 15 {
		t.Fatalf("a key with --max-devices 10 enrolled %d and refused %d of 25", ok.Load(), refused.Load())
	}
	out, err = run(t, env, "enrollment", "list")
	if err != nil || !strings.Contains(out, "10 of 10") {
		t.Fatalf("enrollment list: %v\n%s", err, out)
	}
	for action, want := range map[string]int{"device.enroll": 12, "device.enroll_refused": 18, "device.reset": 1} {
		es, err := s.admin.Audit(ctx, client.AuditFilter{Action: action, Limit: 100})
		if err != nil || len(es) != want {
			t.Errorf("audit %s: %d entries, want %d (%v)", action, len(es), want, err)
		}
	}
	es, _ := s.admin.Audit(ctx, client.AuditFilter{Action: "device.reset"})
	if len(es) != 1 || es[0].Target != "laptop-42" || es[0].Reason != "reflashed" {
		t.Fatalf("reset audit = %+v", es)
	}

	// Each key enrolls at most enroll_rate devices: a burst of two here.
	slow := startServerWith(t, "", func(c *config.Config) { c.EnrollRate = ratelimit.Limits{Rate: 0.001, Burst: 2} })
	_, key, err := slow.admin.CreateEnrollmentKey(ctx, "leaky", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := slow.device.Enroll(ctx, key, fmt.Sprintf("army-%d", i))
		if (i < 2) != (err == nil) || i == 2 && !client.IsKind(err, "rate-limited") {
			t.Fatalf("enrollment %d under a rate of 2: %v", i, err)
		}
	}
	if es, _ := slow.admin.Audit(ctx, client.AuditFilter{Action: "device.enroll_refused", Target: "army-2"}); len(es) != 1 {
		t.Fatalf("rate-limited enrollment audit = %+v", es)
	}
}

// TestExplainNamesEveryReason: a held device outside the current wave is
// told both, by the CLI (and the API it prints).
func TestExplainNamesEveryReason(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	publishSmall(t, s, "agent", "2.0")
	if _, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 0.01}, {Percent: 100}}, Bake: "24h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.CreateHold(ctx, "agent", "2.0", `device.attributes.oem == "contoso"`, "driver crash"); err != nil {
		t.Fatal(err)
	}
	// A device beyond the first 0.01%: nearly every id; find one.
	for i := 0; ; i++ {
		id := fmt.Sprintf("held-%d", i)
		ex, err := s.admin.Explain(ctx, client.ExplainRequest{DeviceID: id, Attributes: map[string]string{"oem": "contoso"},
			Installed: map[string]string{"agent": "1.0"}})
		if err != nil {
			t.Fatal(err)
		}
		d := ex.Decisions[0]
		if d.FailedStep != "wave" {
			continue
		}
		if strings.Join(d.FailedSteps, ",") != "wave,hold" {
			t.Fatalf("failed steps %v: %+v", d.FailedSteps, d.Checks)
		}
		out, err := run(t, env, "explain", "--device-id", id, "--attr", "oem=contoso", "--installed", "agent=1.0")
		if err != nil || !strings.Contains(out, "not offered: wave, hold") || !strings.Contains(out, "FAIL hold") {
			t.Fatalf("explain CLI: %v\n%s", err, out)
		}
		return
	}
}
