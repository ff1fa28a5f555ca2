package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/client"
)

// TestConsoleRollback: a halted deployment's page proposes a rollback to
// the previous version; the button makes it, and the rollback's page says
// what it undoes. A viewer sees no button.
func TestConsoleRollback(t *testing.T) {
	s := startServer(t, nil)
	ctx := context.Background()
	s.publish(t, "agent", "1.0")
	s.publish(t, "agent", "1.1")
	bad, err := s.admin.DeployPlan(ctx, "agent", "1.1", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	hc := browserless(t)
	csrf := signIn(t, s, hc, s.token)
	page := get(t, hc, s.url+"/ui/deployments/"+bad.ID)
	if strings.Contains(page.body, "Roll back to") {
		t.Fatal("a running deployment proposes a rollback")
	}
	if _, err := s.admin.Command(ctx, bad.ID, "halt", "crash loop"); err != nil {
		t.Fatal(err)
	}
	page = get(t, hc, s.url+"/ui/deployments/"+bad.ID)
	if !strings.Contains(page.body, "Roll back to 1.0") {
		t.Fatalf("a halted deployment's page proposes no rollback:\n%s", page.body)
	}
	viewer := browserless(t)
	signIn(t, s, viewer, s.newToken(t, "v", "viewer"))
	if p := get(t, viewer, s.url+"/ui/deployments/"+bad.ID); p.status != http.StatusOK || strings.Contains(p.body, "Roll back to") {
		t.Fatalf("a viewer is offered the rollback button: %d", p.status)
	}

	res := post(t, hc, s.url+"/ui/deployments/"+bad.ID+"/rollback", url.Values{"to": {"1.0"}, "reason": {"crash loop on contoso"}, "csrf": {csrf}})
	if res.status != http.StatusSeeOther {
		t.Fatalf("rollback: %d\n%s", res.status, res.body)
	}
	rbPage := get(t, hc, s.url+res.header.Get("Location"))
	if !strings.Contains(rbPage.body, "agent 1.0") || !strings.Contains(rbPage.body, "A rollback of") || !strings.Contains(rbPage.body, "crash loop on contoso") {
		t.Fatalf("the rollback's page (%s):\n%s", res.header.Get("Location"), rbPage.body)
	}
	ds, _ := s.admin.Deployments(ctx, "agent")
	var rolled int
	for _, d := range ds {
		if d.Plan.Rollback != nil && d.Plan.Rollback.Deployment == bad.ID && d.Version == "1.0" {
			rolled++
		}
	}
	if rolled != 1 {
		t.Fatalf("%d rollbacks of %s", rolled, bad.ID)
	}
}
