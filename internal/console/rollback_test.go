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

// TestConsoleDeletes: the catalog and rings pages delete what was never
// used and show the API's refusal for what was.
func TestConsoleDeletes(t *testing.T) {
	s := startServer(t, nil)
	ctx := context.Background()
	used := s.publish(t, "agent", "1.0")
	unused := s.publish(t, "scratch", "0.1")
	if _, err := s.admin.Deploy(ctx, "agent", "1.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.PutRing(ctx, client.Ring{Name: "lab", Rank: 1, Rule: "true"}); err != nil {
		t.Fatal(err)
	}
	hc := browserless(t)
	csrf := signIn(t, s, hc, s.token)
	del := func(path string) string {
		t.Helper()
		res := post(t, hc, s.url+path, url.Values{"csrf": {csrf}})
		if res.status != http.StatusSeeOther {
			t.Fatalf("POST %s: %d\n%s", path, res.status, res.body)
		}
		return get(t, hc, s.url+res.header.Get("Location")).body
	}
	if page := del("/ui/updates/" + used.ID + "/delete"); !strings.Contains(page, "has been deployed") {
		t.Fatalf("deleting a deployed update:\n%s", page)
	}
	if page := del("/ui/updates/" + unused.ID + "/delete"); !strings.Contains(page, "update "+unused.ID+" deleted") {
		t.Fatalf("deleting an unused update:\n%s", page)
	}
	if page := del("/ui/products/agent/delete"); !strings.Contains(page, "has 1 updates") {
		t.Fatalf("deleting a product with updates:\n%s", page)
	}
	if page := del("/ui/products/scratch/delete"); !strings.Contains(page, "product scratch deleted") {
		t.Fatalf("deleting an empty product:\n%s", page)
	}
	if page := del("/ui/rings/lab/delete"); !strings.Contains(page, "ring lab deleted") {
		t.Fatalf("deleting a ring:\n%s", page)
	}
	if _, err := s.admin.Update(ctx, unused.ID); !client.IsKind(err, "not-found") {
		t.Fatalf("the deleted update: %v", err)
	}
}
