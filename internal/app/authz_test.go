package app_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

// publicRoutes is every route that needs no token. Adding a public route
// means adding it here, on purpose.
var publicRoutes = map[string]httpapi.Access{
	"GET /healthz":                  httpapi.Public,
	"GET /readyz":                   httpapi.Public,
	"GET /metrics":                  httpapi.Public,
	"GET /v1/openapi.yaml":          httpapi.Public,
	"GET /v1/content/{sha256}":      httpapi.Public,
	"GET /v1/tuf/{file}":            httpapi.Public,
	"GET /v1/tuf/targets/{path...}": httpapi.Public,
	"POST /v1/device/check":         httpapi.Device,
	"POST /v1/device/events":        httpapi.Device,
	"POST /v1/device/enroll":        httpapi.Enrollment,
	// Omaha clients carry no credential (docs/security.md).
	"POST /v1/update/{$}": httpapi.Public,
	// The enrollment key in the path authenticates the devices it enrolls.
	"POST /v1/update/{key}/{$}": httpapi.Public,
	// hawkBit DDI controllers authenticate with DDI's own schemes
	// (TargetToken, GatewayToken), checked by the device API.
	"GET /{tenant}/controller/v1/{controller}":                                   httpapi.Public,
	"GET /{tenant}/controller/v1/{controller}/deploymentBase/{action}":           httpapi.Public,
	"POST /{tenant}/controller/v1/{controller}/deploymentBase/{action}/feedback": httpapi.Public,
	"PUT /{tenant}/controller/v1/{controller}/configData":                        httpapi.Public,
	"GET /{tenant}/controller/v1/{controller}/cancelAction/{action}":             httpapi.Public,
	"POST /{tenant}/controller/v1/{controller}/cancelAction/{action}/feedback":   httpapi.Public,
	// Mender clients sign their authentication requests with their key.
	"POST /api/devices/v1/authentication/auth_requests":              httpapi.Public,
	"PUT /api/devices/v1/inventory/device/attributes":                httpapi.Device,
	"PATCH /api/devices/v1/inventory/device/attributes":              httpapi.Device,
	"POST /api/devices/v2/deployments/device/deployments/next":       httpapi.Device,
	"POST /api/devices/v1/deployments/device/deployments/next":       httpapi.Device,
	"GET /api/devices/v1/deployments/device/deployments/next":        httpapi.Device,
	"PUT /api/devices/v1/deployments/device/deployments/{id}/status": httpapi.Device,
	"PUT /api/devices/v1/deployments/device/deployments/{id}/log":    httpapi.Device,
	"GET /api/devices/v1/deployments/download/{sha256}":              httpapi.Public,
	// The console's door: its redirect, assets and sign-in.
	"GET /{$}":              httpapi.Public,
	"GET /ui/static/":       httpapi.Public,
	"GET /ui/sign-in":       httpapi.Public,
	"POST /ui/sign-in":      httpapi.Public,
	"GET /ui/oidc/start":    httpapi.Public,
	"GET /ui/oidc/callback": httpapi.Public,
}

// roleTokens creates one unscoped token per role.
func roleTokens(t *testing.T, s *server) map[access.Role]string {
	t.Helper()
	out := map[access.Role]string{}
	for _, r := range access.Roles {
		_, secret, err := s.admin.CreateToken(context.Background(), client.NewToken{Name: "test-" + string(r), Role: string(r)})
		if err != nil {
			t.Fatal(err)
		}
		out[r] = secret
	}
	return out
}

// TestEveryRouteHasAnAuthorizationDecision enumerates every registered
// route: each is either in the public list or needs a token and names a
// permission; and every token route answers 401 without a token, 403 to
// each role lacking its permission, and gets past authorization for each
// role holding it.
func TestEveryRouteHasAnAuthorizationDecision(t *testing.T) {
	s := startServer(t, "")
	tokens := roleTokens(t, s)
	routes := s.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	seen := map[string]bool{}
	fill := strings.NewReplacer("{name}", "agent", "{sha256}", strings.Repeat("a", 64), "{file}", "root.json", "{path...}", "x")
	for _, r := range routes {
		seen[r.Pattern] = true
		if want, ok := publicRoutes[r.Pattern]; ok {
			if r.Access != want {
				t.Errorf("%s: access %q, want %q", r.Pattern, r.Access, want)
			}
			continue
		}
		method, path, _ := strings.Cut(r.Pattern, " ")
		if r.Access == httpapi.Session {
			// Console pages and forms take a session cookie, never a
			// bearer token: without a session a page sends the browser to
			// sign in and a form post is refused.
			path = strings.NewReplacer("{$}", "", "{id}", "x", "{command}", "pause", "{decision}", "approve", "{action}", "release",
				"{kind}", "tokens").Replace(path)
			want := http.StatusSeeOther
			if method == http.MethodPost {
				want = http.StatusUnauthorized
			}
			for _, tok := range []string{"", tokens[access.RoleAdmin]} {
				if got := statusNoRedirect(t, method, s.url+path, tok); got != want {
					t.Errorf("%s %s without a console session (token %v): %d, want %d", method, path, tok != "", got, want)
				}
			}
			continue
		}
		perm, ok := strings.CutPrefix(string(r.Access), string(httpapi.Token)+":")
		if !ok || perm == "" {
			t.Errorf("%s has no authorization decision (access %q); add one, or list it as public on purpose", r.Pattern, r.Access)
			continue
		}
		path = fill.Replace(path)
		path = strings.Replace(path, "{id}", "x_00000000000000000000000000", 1)
		cases := map[string]access.Permission{path: access.Permission(perm)}
		if strings.Contains(path, "{command}") {
			cases = map[string]access.Permission{}
			for _, c := range rollout.Commands {
				need := access.Widen
				if c.Reduces() {
					need = access.Reduce
				}
				cases[strings.Replace(path, "{command}", string(c), 1)] = need
			}
		}
		for p, need := range cases {
			if got := status(t, method, s.url+p, ""); got != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d, want 401", method, p, got)
			}
			for role, tok := range tokens {
				got := status(t, method, s.url+p, tok)
				switch {
				case access.Grants(role, need) && (got == http.StatusForbidden || got == http.StatusUnauthorized):
					t.Errorf("%s %s as %s (has %s): %d", method, p, role, need, got)
				case !access.Grants(role, need) && got != http.StatusForbidden:
					t.Errorf("%s %s as %s (lacks %s): %d, want 403", method, p, role, need, got)
				}
			}
		}
	}
	for p := range publicRoutes {
		if !seen[p] {
			t.Errorf("public route %s is not registered", p)
		}
	}
}

func status(t *testing.T, method, url, token string) int {
	t.Helper()
	return statusWith(t, http.DefaultClient, method, url, token)
}

// statusNoRedirect is status without following a redirect.
func statusNoRedirect(t *testing.T, method, url, token string) int {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return statusWith(t, hc, method, url, token)
}

func statusWith(t *testing.T, hc *http.Client, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRoles walks each role through what it is for, and what it may not do.
func TestRoles(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	as := func(role access.Role, products ...string) *client.Client {
		_, secret, err := s.admin.CreateToken(ctx, client.NewToken{Name: string(role), Role: string(role), Products: products})
		if err != nil {
			t.Fatal(err)
		}
		return s.admin.WithToken(secret)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !client.IsKind(err, "forbidden") {
			t.Fatalf("%s: %v, want forbidden", what, err)
		}
	}
	path, _ := writeRandomFile(t, 128)

	// Publisher, limited to "agent": publishes agent, nothing else, and
	// cannot deploy.
	pub := as(access.RolePublisher, "agent")
	if w, err := pub.Whoami(ctx); err != nil || w.Role != "publisher" || !slices.Equal(w.Products, []string{"agent"}) || slices.Contains(w.Permissions, "widen") {
		t.Fatalf("whoami = %+v, %v", w, err)
	}
	if _, err := pub.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0"}, []string{path}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := pub.PublishFiles(ctx, client.NewUpdate{Product: "os", Version: "1.0"}, []string{path}, client.PublishOptions{})
	forbidden("scoped publisher publishes another product", err)
	_, err = pub.Deploy(ctx, "agent", "1.0")
	forbidden("publisher deploys", err)
	if _, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "os", Version: "1.0"}, []string{path}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if us, err := pub.Updates(ctx, ""); err != nil || len(us) != 1 || us[0].Product != "agent" {
		t.Fatalf("scoped publisher lists %+v, %v", us, err)
	}

	// Release manager: deploys, pauses, resumes; cannot publish or mint tokens.
	rm := as(access.RoleReleaseManager)
	d, err := rm.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Command(ctx, d.ID, "pause", "looking"); err != nil {
		t.Fatal(err)
	}
	if _, err := rm.Command(ctx, d.ID, "resume", "fine"); err != nil {
		t.Fatal(err)
	}
	_, err = rm.PutProduct(ctx, client.Product{Name: "new"})
	forbidden("release manager creates a product", err)
	_, _, err = rm.CreateToken(ctx, client.NewToken{Name: "x", Role: "admin"})
	forbidden("release manager mints a token", err)

	// Agent: reduces exposure at once, never widens it.
	agent := as(access.RoleAgent)
	if _, err := agent.Command(ctx, d.ID, "pause", "regression suspected"); err != nil {
		t.Fatal(err)
	}
	_, err = agent.Command(ctx, d.ID, "resume", "looks fine")
	forbidden("agent resumes", err)
	h, err := agent.CreateHold(ctx, "agent", "", `device.attributes["oem"] == "contoso"`, "contoso crashes")
	if err != nil {
		t.Fatal(err)
	}
	_, err = agent.ReleaseHold(ctx, h.ID, "agents may not widen")
	forbidden("agent releases a hold", err)
	_, err = agent.Deploy(ctx, "os", "1.0")
	forbidden("agent deploys", err)
	if es, err := agent.Audit(ctx, client.AuditFilter{Action: "hold.create"}); err != nil || len(es) != 1 || !strings.Contains(es[0].Actor, "(agent)") {
		t.Fatalf("agent reads its own hold in the audit log: %+v, %v", es, err)
	}

	// Viewer: reads, changes nothing, cannot read the audit log.
	viewer := as(access.RoleViewer)
	if ds, err := viewer.Deployments(ctx, ""); err != nil || len(ds) != 1 {
		t.Fatalf("viewer lists %+v, %v", ds, err)
	}
	_, err = viewer.Command(ctx, d.ID, "halt", "looks bad")
	forbidden("viewer halts", err)
	_, err = viewer.Audit(ctx, client.AuditFilter{})
	forbidden("viewer reads the audit log", err)

	// A release manager scoped to "os" cannot touch agent's deployment.
	osOnly := as(access.RoleReleaseManager, "os")
	_, err = osOnly.Command(ctx, d.ID, "halt", "looks bad")
	forbidden("os-scoped release manager halts an agent deployment", err)
	if ds, err := osOnly.Deployments(ctx, ""); err != nil || len(ds) != 0 {
		t.Fatalf("os-scoped list = %+v, %v", ds, err)
	}
	// Rings are populations every product deploys to: a scoped release
	// manager reads them (to deploy --ring) but cannot change them.
	if _, err := s.admin.PutRing(ctx, client.Ring{Name: "canary", Rank: 0, Members: []string{"lab-1"}}); err != nil {
		t.Fatal(err)
	}
	if rs, err := osOnly.Rings(ctx); err != nil || len(rs) != 1 || rs[0].Name != "canary" {
		t.Fatalf("os-scoped ring list = %+v, %v", rs, err)
	}
	_, err = osOnly.PutRing(ctx, client.Ring{Name: "canary", Rank: 0, Members: []string{"lab-1", "lab-2"}})
	forbidden("os-scoped release manager changes a ring", err)

	// Revoked and expired tokens are refused.
	tok, secret, err := s.admin.CreateToken(ctx, client.NewToken{Name: "short", Role: "viewer", TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.WithToken(secret).Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.admin.WithToken(secret).Whoami(ctx); !client.IsKind(err, "unauthorized") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token %s: %v", tok.ID, err)
	}
	if _, err := s.admin.RevokeToken(ctx, mustWhoami(t, viewer).TokenID, "left the team"); err != nil {
		t.Fatal(err)
	}
	if _, err := viewer.Deployments(ctx, ""); !client.IsKind(err, "unauthorized") || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	// Every change above is in the audit log under the token that made it.
	es, err := s.admin.Audit(ctx, client.AuditFilter{Action: "deployment.*"})
	if err != nil {
		t.Fatal(err)
	}
	actors := map[string]bool{}
	for _, e := range es {
		actors[e.Action+" "+e.Actor[strings.Index(e.Actor, "("):]] = true
	}
	for _, want := range []string{"deployment.created (release_manager)", "deployment.paused (release_manager)",
		"deployment.resumed (release_manager)", "deployment.paused (agent)"} {
		if !actors[want] {
			t.Errorf("audit log lacks %q: %v", want, actors)
		}
	}
}

func mustWhoami(t *testing.T, c *client.Client) client.Whoami {
	t.Helper()
	w, err := c.Whoami(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return w
}
