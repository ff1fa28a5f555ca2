package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
)

// TestConsoleSessions: signing in with a token gives a session cookie that
// scripts cannot read and other sites cannot send; a post without the
// session's anti-forgery token, or from another origin, changes nothing;
// permissions are the token's; signing out or revoking the token ends the
// session on the server, not only in the browser.
func TestConsoleSessions(t *testing.T) {
	s := startServer(t, nil)
	ctx := context.Background()
	s.publish(t, "agent", "2.0")
	osUpdate := s.publish(t, "os", "5.0")
	dep, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	hc := browserless(t)

	// Without a session every page sends the browser to sign in, and
	// comes back to it afterwards.
	res := get(t, hc, s.url+"/ui/deployments/"+dep.ID)
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/ui/sign-in?next=%2Fui%2Fdeployments%2F"+dep.ID {
		t.Fatalf("page without a session: %d %q", res.status, res.header.Get("Location"))
	}
	if res = get(t, hc, s.url+"/"); res.status != http.StatusFound || res.header.Get("Location") != "/ui/" {
		t.Fatalf("GET /: %d %q", res.status, res.header.Get("Location"))
	}
	// A wrong token is refused with the API's own explanation.
	res = post(t, hc, s.url+"/ui/sign-in", url.Values{"token": {"rmt_" + strings.Repeat("0", 64)}})
	if res.status != http.StatusUnauthorized || !strings.Contains(res.body, "unknown token") {
		t.Fatalf("sign-in with an unknown token: %d\n%s", res.status, res.body)
	}
	// An open redirect after sign-in is not possible.
	res = post(t, hc, s.url+"/ui/sign-in", url.Values{"token": {s.token}, "next": {"//evil.example/ui/"}})
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in with an off-site next: %d %q", res.status, res.header.Get("Location"))
	}
	var cookie string
	for _, c := range res.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "ringmaster_session=") {
			cookie = c
		}
	}
	for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie %q lacks %s", cookie, attr)
		}
	}

	page := get(t, hc, s.url+"/ui/deployments/"+dep.ID)
	if page.status != http.StatusOK || !strings.Contains(page.body, "agent 2.0") {
		t.Fatalf("deployment page: %d\n%s", page.status, page.body)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("page CSP %q", csp)
	}
	csrf := signIn(t, s, hc, s.token)
	u, _ := url.Parse(s.url)
	sessionValue := hc.Jar.Cookies(u)[0].Value

	// A forged post (no anti-forgery token) is refused and changes nothing.
	pause := s.url + "/ui/deployments/" + dep.ID + "/pause"
	res = post(t, hc, pause, url.Values{"reason": {"forged"}})
	if res.status != http.StatusForbidden || !strings.Contains(res.body, "anti-forgery token") {
		t.Fatalf("post without the anti-forgery token: %d\n%s", res.status, res.body)
	}
	res = post(t, hc, pause, url.Values{"reason": {"forged"}, "csrf": {strings.Repeat("0", len(csrf))}})
	if res.status != http.StatusForbidden {
		t.Fatalf("post with a wrong anti-forgery token: %d", res.status)
	}
	// So is one another site makes the browser send, token or not.
	res = post(t, hc, pause, url.Values{"reason": {"forged"}, "csrf": {csrf}}, "Sec-Fetch-Site", "cross-site")
	if res.status != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", res.status)
	}
	if d, _ := s.admin.Deployment(ctx, dep.ID); d.State != "running" {
		t.Fatalf("a refused post changed the deployment: %s", d.State)
	}
	// A real one works, as the signed-in token, with its reason.
	res = post(t, hc, pause, url.Values{"reason": {"checking the canaries"}, "csrf": {csrf}})
	if res.status != http.StatusSeeOther {
		t.Fatalf("pause: %d\n%s", res.status, res.body)
	}
	d, _ := s.admin.Deployment(ctx, dep.ID)
	if d.State != "paused" || d.Reason != "checking the canaries" || !strings.HasPrefix(d.By, "token:") {
		t.Fatalf("after pause: %+v", d)
	}
	// Its result shows once on the next page.
	if page = get(t, hc, s.url+"/ui/deployments/"+dep.ID); !strings.Contains(page.body, "pause; the deployment is paused") {
		t.Fatalf("no confirmation after the pause:\n%s", page.body)
	}
	// A mistake shows the API's problem detail, not a stack or a blank page.
	res = post(t, hc, pause, url.Values{"reason": {"again"}, "csrf": {csrf}})
	if page = get(t, hc, s.url+"/ui/deployments/"+dep.ID); res.status != http.StatusSeeOther || !strings.Contains(page.body, "deployment is already paused") {
		t.Fatalf("pausing twice: %d\n%s", res.status, page.body)
	}
	if page = get(t, hc, s.url+"/ui/deployments/dep_nosuchthing"); page.status != http.StatusBadRequest && page.status != http.StatusNotFound {
		t.Fatalf("unknown deployment: %d\n%s", page.status, page.body)
	}
	// An oversized form is refused with a reason; assets are served, their
	// directory is not listed.
	res = post(t, hc, pause, url.Values{"reason": {strings.Repeat("x", 70<<10)}, "csrf": {csrf}})
	if res.status != http.StatusBadRequest || !strings.Contains(res.body, "could not be read") {
		t.Fatalf("an oversized form: %d\n%.300s", res.status, res.body)
	}
	if res = get(t, hc, s.url+"/ui/static/app.js"); res.status != http.StatusOK || !strings.Contains(res.body, "data-check-rule") {
		t.Fatalf("app.js: %d", res.status)
	}
	if res = get(t, hc, s.url+"/ui/static/"); res.status != http.StatusNotFound {
		t.Fatalf("the static directory: %d", res.status)
	}

	// The rule check answers as the hold form is typed.
	res = post(t, hc, s.url+"/ui/holds/check", url.Values{"rule": {`device.attributes["oem"] ==`}}, "X-CSRF-Token", csrf)
	if res.status != http.StatusOK || !strings.Contains(res.body, `"ok":false`) {
		t.Fatalf("checking a broken rule: %d %s", res.status, res.body)
	}
	res = post(t, hc, s.url+"/ui/holds/check", url.Values{"rule": {`device.attributes["oem"] == "contoso"`}}, "X-CSRF-Token", csrf)
	if !strings.Contains(res.body, `"ok":true`) {
		t.Fatalf("checking a valid rule: %s", res.body)
	}

	// An admin issues a token: its secret is on the answer's page, once.
	res = post(t, hc, s.url+"/ui/admin/tokens", url.Values{"name": {"dashboards"}, "role": {"viewer"}, "products": {"os, agent"}, "csrf": {csrf}})
	_, secret, ok := strings.Cut(res.body, `<code class="secret" id="secret">`)
	if res.status != http.StatusCreated || !ok {
		t.Fatalf("issuing a token: %d\n%s", res.status, res.body)
	}
	secret = secret[:strings.IndexByte(secret, '<')]
	issued, _ := client.New(s.url, secret)
	if who, err := issued.Whoami(ctx); err != nil || who.Role != "viewer" || strings.Join(who.Products, ",") != "agent,os" && strings.Join(who.Products, ",") != "os,agent" {
		t.Fatalf("the issued token: %+v, %v", who, err)
	}
	if page = get(t, hc, s.url+"/ui/admin"); strings.Contains(page.body, secret) {
		t.Fatal("the token page shows an issued secret again")
	}
	// A bad request shows the API's explanation and issues nothing.
	post(t, hc, s.url+"/ui/admin/tokens", url.Values{"name": {"x"}, "role": {"overlord"}, "csrf": {csrf}})
	if page = get(t, hc, s.url+"/ui/admin"); !strings.Contains(page.body, "role") || !strings.Contains(page.body, `class="flash error"`) {
		t.Fatalf("issuing a token with an unknown role:\n%s", page.body)
	}

	// Withdraw an update from the catalog, with a reason.
	if page = get(t, hc, s.url+"/ui/catalog"); !strings.Contains(page.body, "/ui/updates/"+osUpdate.ID+"/withdraw") {
		t.Fatalf("the catalog offers no withdrawal of a published update:\n%s", page.body)
	}
	res = post(t, hc, s.url+"/ui/updates/"+osUpdate.ID+"/withdraw", url.Values{"reason": {"bad signature chain"}, "csrf": {csrf}})
	if u, _ := s.admin.Update(ctx, osUpdate.ID); res.status != http.StatusSeeOther || u.State != "withdrawn" || u.WithdrawReason != "bad signature chain" {
		t.Fatalf("withdrawing from the console: %d, %+v", res.status, u)
	}
	if page = get(t, hc, s.url+"/ui/catalog"); !strings.Contains(page.body, "withdrawn") || !strings.Contains(page.body, "bad signature chain") {
		t.Fatalf("the catalog after the withdrawal:\n%s", page.body)
	}

	// A release manager scoped to os sees and steers only os.
	scoped := browserless(t)
	scopedCSRF := signIn(t, s, scoped, s.newToken(t, "rm-os", "release_manager", "os"))
	if page = get(t, scoped, s.url+"/ui/deployments"); strings.Contains(page.body, dep.ID) {
		t.Fatalf("a token scoped to os lists an agent deployment:\n%s", page.body)
	}
	if page = get(t, scoped, s.url+"/ui/deployments/"+dep.ID); page.status != http.StatusForbidden {
		t.Fatalf("a token scoped to os opened an agent deployment: %d", page.status)
	}
	post(t, scoped, s.url+"/ui/deployments/"+dep.ID+"/resume", url.Values{"reason": {"mine now"}, "csrf": {scopedCSRF}})
	if d, _ := s.admin.Deployment(ctx, dep.ID); d.State != "paused" {
		t.Fatalf("a token scoped to os resumed an agent deployment: %+v", d)
	}
	if page = get(t, scoped, s.url+"/ui/admin"); page.status != http.StatusForbidden {
		t.Fatalf("a release manager opened the token page: %d", page.status)
	}

	// Sign-out ends the session on the server: the old cookie, replayed,
	// no longer works.
	if res = post(t, hc, s.url+"/ui/sign-out", url.Values{"csrf": {csrf}}); res.status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", res.status)
	}
	replay := browserless(t)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "ringmaster_session", Value: sessionValue}})
	if res = get(t, replay, s.url+"/ui/"); res.status != http.StatusSeeOther {
		t.Fatalf("a signed-out session still works: %d", res.status)
	}
	// Revoking the token a session signed in with ends that session too.
	tok := s.newToken(t, "short-lived", "viewer")
	viewer := browserless(t)
	signIn(t, s, viewer, tok)
	ws, _ := client.New(s.url, tok)
	who, _ := ws.Whoami(ctx)
	if _, err := s.admin.RevokeToken(ctx, who.TokenID, "leaving"); err != nil {
		t.Fatal(err)
	}
	if res = get(t, viewer, s.url+"/ui/"); res.status != http.StatusSeeOther {
		t.Fatalf("a session outlived its revoked token: %d", res.status)
	}
	// Sign-in and sign-out are in the audit log.
	es, err := s.admin.Audit(ctx, client.AuditFilter{Action: "console.*"})
	if err != nil || len(es) < 5 {
		t.Fatalf("console audit entries: %d, %v", len(es), err)
	}
	var out int
	for _, e := range es {
		if e.Action == "console.sign_out" {
			out++
		}
	}
	if out != 1 {
		t.Fatalf("%d sign-outs audited, want 1", out)
	}
}

// TestConsoleOIDC: a person signs in through an OpenID Connect provider
// (a real one, in process); their groups map to a role and products; the
// session acts as them and the audit log names them.
func TestConsoleOIDC(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	s := startServer(t, func(c *config.Config) {
		mc := m.Config()
		c.Console.OIDC = &config.OIDC{Issuer: mc.Issuer, ClientID: mc.ClientID, ClientSecret: mc.ClientSecret,
			Groups: []config.GroupGrant{
				{Group: "sre", Role: "viewer"},
				{Group: "release-os", Role: "release_manager", Products: []string{"os"}},
				{Group: "release-fw", Role: "release_manager", Products: []string{"fw"}},
			}}
	})
	ctx := context.Background()
	s.publish(t, "os", "5.0")
	s.publish(t, "agent", "2.0")
	// signInAs runs the whole redirect dance as a browser would, for user.
	signInAs := func(user *mockoidc.MockUser) (*http.Client, response) {
		hc := browserless(t)
		m.QueueUser(user)
		next := s.url + "/ui/oidc/start?next=%2Fui%2Fdeployments"
		var res response
		for range 5 {
			res = get(t, hc, next)
			if res.status != http.StatusFound && res.status != http.StatusSeeOther {
				return hc, res
			}
			loc, _ := url.Parse(res.header.Get("Location"))
			next = res.header.Get("Location")
			if loc.Host == "" {
				next = s.url + next
			}
		}
		t.Fatalf("sign-in did not settle: %d %s", res.status, res.header.Get("Location"))
		return nil, res
	}
	ana := &mockoidc.MockUser{Subject: "u-ana", Email: "ana@example.com", PreferredUsername: "ana", Groups: []string{"sre", "release-os"}}
	hc, res := signInAs(ana)
	if res.status != http.StatusOK || !strings.Contains(res.body, `href="/ui/deployments"`) {
		t.Fatalf("OIDC callback: %d\n%s", res.status, res.body)
	}
	page := get(t, hc, s.url+"/ui/deployments")
	if page.status != http.StatusOK || !strings.Contains(page.body, "ana@example.com · release_manager · os") {
		t.Fatalf("signed in through OIDC, the page shows:\n%s", page.body)
	}
	// The groups' most powerful role (release manager over viewer), with
	// that grant's products: ana steers os and only os.
	csrf := page.body[strings.Index(page.body, `name="csrf" value="`)+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	dOS, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dAgent, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []client.Deployment{dOS, dAgent} {
		post(t, hc, s.url+"/ui/deployments/"+d.ID+"/pause", url.Values{"reason": {"ana looks"}, "csrf": {csrf}})
	}
	if d, _ := s.admin.Deployment(ctx, dOS.ID); d.State != "paused" || d.By != "oidc:u-ana(ana@example.com)" {
		t.Fatalf("os deployment after ana's pause: %+v", d)
	}
	if d, _ := s.admin.Deployment(ctx, dAgent.ID); d.State == "paused" {
		t.Fatalf("ana (release manager of os) paused an agent deployment")
	}
	es, _ := s.admin.Audit(ctx, client.AuditFilter{Actor: "oidc:u-ana(ana@example.com)"})
	var actions []string
	for _, e := range es {
		actions = append(actions, e.Action)
	}
	if !strings.Contains(strings.Join(actions, " "), "deployment.paused") || !strings.Contains(strings.Join(actions, " "), "console.sign_in") {
		t.Fatalf("ana's audit entries: %v", actions)
	}
	// Someone in no mapped group is refused, and says why.
	_, res = signInAs(&mockoidc.MockUser{Subject: "u-bo", Email: "bo@example.com", Groups: []string{"marketing"}})
	if res.status != http.StatusForbidden || !strings.Contains(res.body, "no group that grants a Ringmaster role") {
		t.Fatalf("sign-in without a mapped group: %d\n%s", res.status, res.body)
	}
	// A callback this browser did not start is refused.
	res = get(t, browserless(t), s.url+"/ui/oidc/callback?state=x&code=y")
	if res.status != http.StatusUnauthorized {
		t.Fatalf("a callback without a sign-in: %d", res.status)
	}
}
