package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/config"
)

// TestHealthGate: a gated rollout whose devices succeed advances past its
// bake and completes; one whose devices fail is paused by the health gate
// with the numbers in the reason, and explain and health say so.
func TestHealthGate(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}

	good := publishSmall(t, s, "agent", "2.0")
	d, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1s",
		Gate: &client.Gate{BaselineFailure: 0.10, BaselineRollback: 0.10, BaselineCrash: 0.10}})
	if err != nil {
		t.Fatal(err)
	}
	// Without reports the baked wave waits for the gate.
	time.Sleep(2500 * time.Millisecond)
	if d, _ = s.admin.Deployment(ctx, d.ID); d.Wave != 0 || d.State != "running" {
		t.Fatalf("advanced without evidence: %+v", d)
	}
	// Devices report on their offers: the first wave's now, the second's
	// once it opens and they are offered it at their next check-in.
	reportUntilCompleted(t, s, d.ID, installEvents(good, 300, "ok", 0))

	bad := publishSmall(t, s, "os", "5.0")
	// Nine in ten devices are in the first wave: they are offered 5.0 and
	// report; the rest are not offered it and their reports do not count.
	d2, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 90}, {Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	// Twice the baseline: one device in 25 fails (4% against 2%).
	// The devices are offered it first, then report: the gate pauses on
	// part of the reports, and the rest still count (they cite offers made
	// before the pause).
	doubled, err := s.devices(t).citeAll(ctx, installEvents(bad, 1500, "bad", 25))
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i := 0; i < len(doubled); i += 500 {
		r, err := s.devices(t).sendUncited(ctx, doubled[i:i+500])
		if err != nil {
			t.Fatal(err)
		}
		accepted += r.Accepted
	}
	waitFor(t, 60*time.Second, func() bool {
		d2, _ = s.admin.Deployment(ctx, d2.ID)
		return d2.State == "paused"
	})
	// The gate may fire after any share of the devices has reported (they
	// report concurrently), so the observed rate is near 4%, not exactly.
	var rate float64
	_, scanErr := fmt.Sscanf(d2.Reason[strings.Index(d2.Reason, "failure rate ")+len("failure rate "):], "%f%%", &rate)
	if d2.By != "health-gate" || !strings.Contains(d2.Reason, "regressed") || scanErr != nil || rate < 3 || rate > 5.5 ||
		!strings.Contains(d2.Reason, "vs baseline 2.00%") {
		t.Fatalf("gate pause: by %q, reason %q", d2.By, d2.Reason)
	}
	// With every accepted report counted (the gate may have paused on
	// part of them), the report shows the regression.
	var h client.Health
	waitFor(t, 60*time.Second, func() bool {
		h, err = s.admin.DeploymentHealth(ctx, d2.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"]+h.Health.Overall.Devices["install_failed"] == int64(accepted)
	})
	if h.Gate == nil || h.Gate.Verdict != "regressed" || h.Gate.Tests[0].LogLRWorse < 4.6 || h.Gate.Baseline.Failure != 0.02 {
		t.Fatalf("health = %+v", h.Gate)
	}
	evs, _ := s.admin.DeploymentEvents(ctx, d2.ID)
	if last := evs[len(evs)-1]; last.Kind != "gate_paused" || last.Actor != "health-gate" {
		t.Fatalf("last event %+v", last)
	}
	out, _ := run(t, env, "explain", "--device-id", "dev-001", "--installed", "os=4.0")
	if !strings.Contains(out, "paused (by health-gate; reason: rollout regressed") {
		t.Fatalf("explain after a gate pause:\n%s", out)
	}
	out, _ = run(t, env, "health", d2.ID)
	if !strings.Contains(out, "gate: regressed") || !strings.Contains(out, "baseline (declared") {
		t.Fatalf("health CLI:\n%s", out)
	}
}

// TestAutomaticHold: a regression confined to one OEM's devices becomes an
// automatic hold on that OEM (with its evidence) while the rollout goes on
// for everyone else; explain names the hold.
func TestAutomaticHold(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	u := publishSmall(t, s, "agent", "2.0")
	d, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02, AutoHold: "active"}})
	if err != nil {
		t.Fatal(err)
	}
	// Six OEMs: a cohort holds at most a fifth of the devices (health.MaxCohortShare).
	fleet := []string{"contoso", "fabrikam", "northwind", "adatum", "litware", "tailspin"}
	var events []client.DeviceEvent
	for i := 0; i < 600; i++ {
		typ := "install_succeeded"
		if fleet[i%6] == "contoso" && i/6%2 == 0 {
			typ = "install_failed"
		}
		events = append(events, client.DeviceEvent{EventID: fmt.Sprintf("e-%d", i), DeviceID: fmt.Sprintf("dev-%03d", i), UpdateID: u.ID,
			Type: typ, Time: time.Now().Add(-time.Minute).UTC(), Attributes: map[string]string{"oem": fleet[i%6], "arch": []string{"x64", "arm64"}[i/3%2]}})
	}
	oems := fleet[:3]
	for len(events) > 0 {
		n := min(len(events), 300)
		if _, err := s.devices(t).send(ctx, events[:n]); err != nil {
			t.Fatal(err)
		}
		events = events[n:]
	}
	var holds []client.Hold
	waitFor(t, 60*time.Second, func() bool {
		holds, _ = s.admin.Holds(ctx, "agent", "active")
		return len(holds) == 1
	})
	// The controller rebuilds the device snapshot right after committing
	// the hold; wait until a device of the cohort sees it.
	waitFor(t, 30*time.Second, func() bool {
		r, err := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: "probe", Attributes: map[string]string{"oem": "contoso"},
			Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		return err == nil && len(r.Offers) == 0
	})
	h := holds[0]
	if h.Source != "automatic" || h.Rule != `device.attributes["oem"] == "contoso"` || h.DeploymentID != d.ID || h.CreatedBy != "health-gate" ||
		!strings.Contains(h.Reason, "automatic: oem=contoso failure rate") || !strings.Contains(h.Reason, "vs baseline 2.00%") {
		t.Fatalf("automatic hold = %+v", h)
	}
	if d, _ = s.admin.Deployment(ctx, d.ID); d.State != "running" {
		t.Fatalf("a localized regression paused the rollout: %+v", d)
	}
	// The rest keep being offered the update; the held cohort does not.
	offered := map[string]int{}
	for i := 0; i < 90; i++ {
		oem := oems[i%3]
		r, err := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: fmt.Sprintf("new-%03d", i), Attributes: map[string]string{"oem": oem},
			Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		offered[oem] += len(r.Offers)
	}
	if offered["contoso"] != 0 || offered["fabrikam"] != 30 || offered["northwind"] != 30 {
		t.Fatalf("offers by oem after the hold: %v", offered)
	}
	// The rest of the rollout is judged without the held cohort. Contoso
	// devices that checked in after the hold were not offered the update,
	// so their failures are not evidence: how many of contoso's failures
	// count depends on when the gate acted, and once the rest no longer
	// regresses the gate need not name the cohort; if it does, it names
	// this hold.
	hl, err := s.admin.DeploymentHealth(ctx, d.ID)
	if err != nil || hl.Gate == nil || hl.Gate.Verdict == "regressed" ||
		strings.Contains(hl.Gate.Summary, "held automatically") && !strings.Contains(hl.Gate.Summary, "cohort oem=contoso held automatically ("+h.ID+")") {
		t.Fatalf("gate after the hold: %+v, %v", hl.Gate, err)
	}
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	out, _ := run(t, env, "explain", "--device-id", "dev-x", "--attr", "oem=contoso", "--installed", "agent=1.0")
	if !strings.Contains(out, "FAIL hold") || !strings.Contains(out, h.ID+" (automatic)") {
		t.Fatalf("explain for a held device:\n%s", out)
	}
}

// TestRegressionAlerts: a regression pause is delivered to a webhook,
// signed, and retried until the receiver accepts it.
func TestRegressionAlerts(t *testing.T) {
	type delivery struct {
		alert     map[string]any
		signature string
		body      []byte
	}
	got := make(chan delivery, 16)
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // the first delivery fails: it must be retried
			return
		}
		var a map[string]any
		json.Unmarshal(body, &a)
		got <- delivery{alert: a, signature: r.Header.Get("X-Ringmaster-Signature"), body: body}
	}))
	defer recv.Close()
	s := startServerWith(t, "", func(c *config.Config) {
		c.Webhooks = []config.Webhook{{Name: "oncall", URL: recv.URL, Secret: "s3cret", Kinds: []string{"deployment.regressed", "deployment.paused"}}}
	})
	ctx := context.Background()
	u := publishSmall(t, s, "os", "5.0")
	d, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.devices(t).send(ctx, installEvents(u, 300, "bad", 3)); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	deadline := time.After(90 * time.Second)
	for len(kinds) < 2 {
		select {
		case dl := <-got:
			if dl.signature != alerts.Sign("s3cret", dl.body) {
				t.Fatalf("bad signature %q", dl.signature)
			}
			if dl.alert["deployment_id"] != d.ID || dl.alert["actor"] != "health-gate" || !strings.Contains(dl.alert["summary"].(string), "regressed") {
				t.Fatalf("alert %v", dl.alert)
			}
			kinds[dl.alert["kind"].(string)] = true
		case <-deadline:
			t.Fatalf("alerts received: %v after %d calls", kinds, calls.Load())
		}
	}
	if !kinds["deployment.regressed"] || !kinds["deployment.paused"] || calls.Load() < 3 {
		t.Fatalf("kinds %v, calls %d", kinds, calls.Load())
	}
}
