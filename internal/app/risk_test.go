package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

// TestRiskOrderedRollout: a risk model trained from a past release's
// outcomes (through the CLI) orders the next rollout least risky first,
// with its exploration share at random; explain shows each device's risk
// and why; the gate judges failures against the predicted risk of the
// devices that reported; plans that cannot be risk-ordered are refused.
func TestRiskOrderedRollout(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	models := []string{"m0", "m1", "m2"} // m2 devices fail a fifth of their installs
	const n = 900
	attrs := func(i int) map[string]string {
		return map[string]string{"model": models[i%3], "oem": []string{"contoso", "fabrikam"}[i/3%2]}
	}
	checkIn := func(i int) client.CheckInResponse {
		r, err := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: fmt.Sprintf("dev-%03d", i), Attributes: attrs(i),
			Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	publishSmall(t, s, "agent", "1.0")
	if out, err := run(t, env, "risk", "train", "agent"); err == nil || !strings.Contains(out+err.Error(), "at least 200") {
		t.Fatalf("trained without history: %v\n%s", err, out)
	}
	// The past release: every device installs it; m2 devices fail 20%, the rest 1%.
	past, err := s.admin.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	var events []client.DeviceEvent
	for i := range n {
		checkIn(i)
		typ := "install_succeeded"
		if i%3 == 2 && i%5 == 0 || i%3 != 2 && i%100 == 1 {
			typ = "install_failed"
		}
		events = append(events, client.DeviceEvent{EventID: fmt.Sprintf("past-%d", i), DeviceID: fmt.Sprintf("dev-%03d", i), UpdateID: past.UpdateID,
			DeploymentID: past.ID, Type: typ, Time: time.Now().UTC(), Attributes: attrs(i)})
	}
	for len(events) > 0 {
		k := min(len(events), 300)
		if _, err := s.devices(t).send(ctx, events[:k]); err != nil {
			t.Fatal(err)
		}
		events = events[k:]
	}
	var out string
	waitFor(t, 30*time.Second, func() bool { // events and the registry are written off the request path
		out, err = run(t, env, "risk", "train", "agent")
		return err == nil && strings.Contains(out, fmt.Sprintf("%d installs", n))
	})
	if !strings.Contains(out, "model=m2") || !strings.Contains(out, "fleet mean risk") {
		t.Fatalf("risk train:\n%s", out)
	}
	m, err := s.admin.RiskModel(ctx, "agent")
	if err != nil || m.Top[0].Feature != "model=m2" || m.Top[0].LogOdds <= 0 || m.Population != n {
		t.Fatalf("risk model = %+v, %v", m, err)
	}

	// The next release, risk-ordered: at 10%, m2 devices are offered only
	// through the exploration share.
	u := publishSmall(t, s, "agent", "2.0")
	if _, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Order: "risk", Explore: 2}); err == nil ||
		!strings.Contains(err.Error(), "explore") {
		t.Fatalf("explore 2 accepted: %v", err)
	}
	d, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Bake: "24h", Order: "risk",
		Gate: &client.Gate{BaselineFailure: 0.07}})
	if err != nil || d.Plan.RiskModel != m.ID {
		t.Fatalf("risk-ordered deployment = %+v, %v", d, err)
	}
	offered := map[string]int{}
	var reports []client.DeviceEvent
	for i := range n {
		if r := checkIn(i); len(r.Offers) > 0 && r.Offers[0].UpdateID == u.ID {
			offered[attrs(i)["model"]]++
			reports = append(reports, client.DeviceEvent{EventID: fmt.Sprintf("new-%d", i), DeviceID: fmt.Sprintf("dev-%03d", i), UpdateID: u.ID,
				DeploymentID: d.ID, Type: "install_succeeded", Time: time.Now().UTC(), Attributes: attrs(i)})
		}
	}
	total := offered["m0"] + offered["m1"] + offered["m2"]
	if total < 60 || total > 120 || offered["m2"] > total/6 {
		t.Fatalf("offered at 10%% by model: %v (random order would offer about 30 of each)", offered)
	}
	// Explain shows the risk and its contributions.
	out, err = run(t, env, "explain", "--device-id", "dev-002", "--attr", "model=m2", "--attr", "oem=contoso", "--installed", "agent=1.0")
	if err != nil || !strings.Contains(out, "risk: predicted failure") || !strings.Contains(out, "model=m2 +") || !strings.Contains(out, "risk order") {
		t.Fatalf("explain:\n%s (%v)", out, err)
	}
	// The gate's baseline follows the predicted risk of who reported.
	if _, err := s.devices(t).send(ctx, reports); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		h, err := s.admin.DeploymentHealth(ctx, d.ID)
		return err == nil && h.Gate != nil && strings.Contains(h.Gate.Baseline.Source, "predicted risk of the devices exposed")
	})
	// A product without a risk model cannot be risk-ordered.
	publishSmall(t, s, "tool", "1.0")
	if _, err := s.admin.DeployPlan(ctx, "tool", "1.0", client.Plan{Order: "risk"}); err == nil || !strings.Contains(err.Error(), "risk model") {
		t.Fatalf("risk order without a model: %v", err)
	}
}
