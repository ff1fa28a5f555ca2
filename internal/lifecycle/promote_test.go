package lifecycle

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

// TestPromote: a deployment that completed in the canary ring is promoted
// to the next ring by rank and rolls out there in waves; it keeps its id
// and history, the canary devices stay offered, and rings' ranks decide
// where it may go.
func TestPromote(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", nil)
	opts := client.PublishOptions{Poll: 50 * time.Millisecond}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "svc", Version: "2.0", Kind: "app"}, []string{randomFile(t, 4096)}, opts); err != nil {
		t.Fatal(err)
	}
	var canary []string
	for i := range 5 {
		canary = append(canary, fmt.Sprintf("canary-%d", i))
	}
	for _, r := range []client.Ring{
		{Name: "lab", Rank: -5, Rule: "true"},
		{Name: "canary", Rank: 0, Members: canary},
		{Name: "broad", Rank: 10, Rule: `device.attributes["region"] == "eu"`},
		{Name: "retail", Rank: 20, Rule: "true"},
	} {
		if _, err := s.Admin.PutRing(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.Admin.DeployPlan(ctx, "svc", "2.0", client.Plan{Ring: "canary", Waves: []client.Wave{{Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Promote(ctx, d.ID, "", "too early"); !client.IsKind(err, "conflict") {
		t.Fatalf("promoting a deployment before it completed its ring: %v", err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err = s.Admin.Deployment(ctx, d.ID)
		return err == nil && d.State == "completed"
	})
	if _, err := s.Admin.Promote(ctx, d.ID, "lab", "backwards"); !client.IsKind(err, "invalid") {
		t.Fatalf("promoting to a ring of lower rank: %v", err)
	}
	if _, err := s.Admin.Promote(ctx, d.ID, "", ""); !client.IsKind(err, "invalid") {
		t.Fatalf("promoting without a reason: %v", err)
	}
	p, err := s.Admin.Promote(ctx, d.ID, "", "canary healthy for a week", client.Wave{Percent: 50, Bake: "1h"}, client.Wave{Percent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != d.ID || p.Plan.Ring != "broad" || len(p.Plan.Promotions) != 1 || p.Plan.Promotions[0].From != "canary" ||
		p.State != "running" || p.Wave != 1 || p.Percent != 50 || len(p.Plan.Waves) != 3 || p.Plan.Gate == nil {
		t.Fatalf("after promotion: %+v (plan %+v)", p, p.Plan)
	}

	device, _ := client.New(s.URL, "")
	offered := func(id, region string) bool {
		r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: id, Attributes: map[string]string{"region": region},
			Installed: []client.Installed{{Product: "svc", Version: "1.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Offers) == 1
	}
	for _, id := range canary {
		if !offered(id, "us") {
			t.Fatalf("canary device %s is no longer offered after the promotion", id)
		}
	}
	count := func() (n int) {
		for i := range 60 {
			if offered(fmt.Sprintf("eu-%02d", i), "eu") {
				n++
			}
		}
		return n
	}
	if n := count(); n == 0 || n == 60 {
		t.Fatalf("wave 1 in broad (50%%) offered %d of 60 devices", n)
	}
	if offered("us-1", "us") {
		t.Fatal("a device in no promoted ring is offered")
	}
	ex, err := s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: canary[0], Installed: map[string]string{"svc": "1.0"}})
	if err != nil || len(ex.Decisions) != 1 || !ex.Decisions[0].Offered || !strings.Contains(fmt.Sprint(ex.Decisions[0].Checks), "promoted from") {
		t.Fatalf("explain for a canary device: %+v, %v", ex.Decisions, err)
	}
	if _, err := s.Admin.Command(ctx, d.ID, "advance", "broad wave 1 healthy"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 60 {
		t.Fatalf("after the last wave in broad, %d of 60 devices are offered", n)
	}
	// An agent promotes through a plan, within its budget.
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "tool", Version: "1.0", Kind: "app"}, []string{randomFile(t, 4096)}, opts); err != nil {
		t.Fatal(err)
	}
	td, err := s.Admin.DeployPlan(ctx, "tool", "1.0", client.Plan{Ring: "canary", Waves: []client.Wave{{Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		td, err = s.Admin.Deployment(ctx, td.ID)
		return err == nil && td.State == "completed"
	})
	_, agentToken, err := s.Admin.CreateToken(ctx, client.NewToken{Name: "release-bot", Role: "agent", Budget: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sess := apptest.MCPSession(t, s.Admin.WithToken(agentToken))
	var plan struct {
		Hash   string `json:"plan_hash"`
		Change struct {
			Ring string `json:"ring"`
		} `json:"change"`
		WithinBudget bool `json:"within_budget"`
	}
	if msg := apptest.CallTool(t, sess, "plan_change", map[string]any{"action": "promote", "deployment_id": td.ID, "reason": "canary clean"}, &plan); msg != "" {
		t.Fatal(msg)
	}
	if plan.Change.Ring != "broad" || !plan.WithinBudget {
		t.Fatalf("the agent's promotion plan: %+v", plan)
	}
	var out struct{ Applied bool }
	if msg := apptest.CallTool(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, &out); msg != "" || !out.Applied {
		t.Fatalf("applying the promotion: %q %+v", msg, out)
	}
	if td, _ = s.Admin.Deployment(ctx, td.ID); td.Plan.Ring != "broad" || !strings.HasPrefix(td.Plan.Promotions[0].By, "token:") {
		t.Fatalf("after the agent's promotion: ring %s, promotions %+v", td.Plan.Ring, td.Plan.Promotions)
	}

	evs, err := s.Admin.DeploymentEvents(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, "completed") || !slices.Contains(kinds, "promoted") || kinds[0] != "created" {
		t.Fatalf("the deployment's history after promotion: %v", kinds)
	}
}
