package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ringmaster/ringmaster/client"
)

// browser starts headless Chromium (Debian's chromium package, which
// .ci/run installs). Without one the test is skipped loudly, unless
// RINGMASTER_REQUIRE_BROWSER is set, as .ci/run sets it.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("RINGMASTER_REQUIRE_BROWSER") != "" {
			t.Fatal("RINGMASTER_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)")
		}
		t.Skip("SKIPPED: no chromium on PATH; the console's browser tests did not run (apt-get install chromium, or run .ci/run)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.Headless)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab is a browser tab with its own cookies (a new browser context).
func tab(t *testing.T, b context.Context) context.Context {
	ctx, cancel := chromedp.NewContext(b, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab; it must not have a deadline of its own
	// (one would close the tab when it passes).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// run runs steps in a tab, bounded generously (the machine is shared;
// nothing here measures time).
func run(t *testing.T, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	result(t, tab, chromedp.Steps(steps...))
}

// result runs one action in a tab and returns its value.
func result[T any](t *testing.T, tab context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 90*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		// Say where the browser was and what it showed.
		lctx, cancel := context.WithTimeout(tab, 10*time.Second)
		defer cancel()
		where, _ := chromedp.Run(lctx, chromedp.Location())
		body, _ := chromedp.Run(lctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 2000) : ""`))
		t.Fatalf("%v\nat %s:\n%s", err, where, body)
	}
	return v
}

func text(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	return result(t, tab, chromedp.Text(chromedp.CSS(sel)))
}

// screenshot saves a full-page PNG: under docs/ when
// RINGMASTER_SCREENSHOTS is set (to refresh the committed ones), else in
// the test's temporary directory.
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	png := result(t, tab, chromedp.FullScreenshot(100))
	dir := t.TempDir()
	if os.Getenv("RINGMASTER_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "..", "docs")
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is %d bytes", name, len(png))
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInBrowser drives the console in real headless Chromium: sign
// in with a token; watch a gated rollout become paused, live, when its
// devices report failures; approve a wave with a reason and find it in
// the audit log; activate a proposed automatic hold; explain a device; a
// viewer sees no action and a forged form post is refused; sign-out ends
// the session.
func TestConsoleInBrowser(t *testing.T) {
	b := browser(t)
	s := startServer(t, nil)
	ctx := context.Background()
	oems := []string{"contoso", "fabrikam", "northwind", "adatum", "litware", "tailspin"}
	attrs := func(i int) map[string]string {
		return map[string]string{"oem": oems[i%6], "arch": []string{"x64", "arm64"}[i/3%2]}
	}

	// A rollout that waits for a person before its first wave.
	s.publish(t, "app", "1.0")
	approval, err := s.admin.DeployPlan(ctx, "app", "1.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 100}}, Bake: "1h", RequireApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	// A rollout whose gate proposes holding a cohort that regresses.
	s.publish(t, "agent", "2.0")
	held, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02, AutoHold: "proposed"}})
	if err != nil {
		t.Fatal(err)
	}
	s.report(t, "fleet", "agent", 600, attrs, func(i int) bool { return oems[i%6] == "contoso" && i/6%2 == 0 })
	// A gated rollout, healthy so far, that the test will break.
	s.publish(t, "os", "5.0")
	gated, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 90}, {Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	var proposed []client.Hold
	waitFor(t, 90*time.Second, func() bool {
		proposed, _ = s.admin.Holds(ctx, "agent", "proposed")
		if len(proposed) != 1 {
			h, err := s.admin.DeploymentHealth(ctx, held.ID)
			all, _ := s.admin.Holds(ctx, "agent", "")
			t.Logf("waiting for a proposed hold: holds %+v, gate %+v, %v", all, h.Gate, err)
		}
		return len(proposed) == 1
	})

	admin := tab(t, b)
	// Sign in with a token.
	run(t, admin, chromedp.Navigate(s.url+"/"), chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), s.token), chromedp.Submit(chromedp.ID("#token")),
		chromedp.WaitVisible(chromedp.ID("#rollouts")))
	if who := text(t, admin, ".who span"); !strings.Contains(who, "bootstrap-admin · admin") {
		t.Fatalf("signed in as %q", who)
	}

	// The gated rollout becomes paused on its page without a reload.
	run(t, admin, chromedp.Navigate(s.url+"/ui/deployments/"+gated.ID), chromedp.WaitVisible(chromedp.CSS("#deployment-state .state-running")))
	result(t, admin, chromedp.Evaluate[bool](`window.notReloaded = true`))
	s.report(t, "os", "os", 120, attrs, func(i int) bool { return i%2 == 0 })
	run(t, admin, chromedp.WaitVisible(chromedp.CSS("#deployment-state .state-paused")))
	if !result(t, admin, chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Fatal("the page reloaded to show the pause")
	}
	if gate := text(t, admin, "#gate"); !strings.Contains(gate, "regressed") || !strings.Contains(gate, "failure") {
		t.Fatalf("gate section after the pause:\n%s", gate)
	}
	screenshot(t, admin, "console-deployment.png")

	// Enter in the reason field picks no command for the person.
	run(t, admin, chromedp.Navigate(s.url+"/ui/deployments/"+gated.ID), chromedp.WaitVisible(chromedp.CSS("button.cmd-resume")))
	result(t, admin, chromedp.Evaluate[bool](`window.enterMarker = true`))
	run(t, admin, chromedp.SendKeys(chromedp.CSS(`#status input[name=reason]`), "just looking\r"))
	// A live refresh of this same document completing shows that no
	// submission navigated away (one would end this evaluation with an
	// error, or leave a page without the marker).
	stayed := result(t, admin, chromedp.Evaluate[bool](`new Promise(done => { const before = document.body.dataset.refreshed;
		const poll = setInterval(() => { if (document.body.dataset.refreshed !== before) { clearInterval(poll); done(window.enterMarker === true); } }, 100); })`,
		chromedp.EvalAwaitPromise))
	if d, _ := s.admin.Deployment(ctx, gated.ID); !stayed || d.State != "paused" {
		t.Fatalf("Enter in the reason field changed the deployment: %s", d.State)
	}

	// Approve the waiting wave with a reason; the audit log has it.
	run(t, admin, chromedp.Navigate(s.url+"/ui/deployments/"+approval.ID), chromedp.WaitVisible(chromedp.CSS("button.cmd-approve")),
		chromedp.SendKeys(chromedp.CSS(`#status input[name=reason]`), "canary owners signed off"),
		chromedp.Click(chromedp.CSS("button.cmd-approve")), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	run(t, admin, chromedp.Navigate(s.url+"/ui/audit?target="+approval.ID), chromedp.WaitVisible(chromedp.CSS("table")))
	if audit := text(t, admin, "table"); !strings.Contains(audit, "deployment.approved") || !strings.Contains(audit, "canary owners signed off") {
		t.Fatalf("audit log after approving:\n%s", audit)
	}

	// Activate the proposed automatic hold from the overview.
	run(t, admin, chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`form[data-hold=%q] button`, proposed[0].ID))))
	screenshot(t, admin, "console-overview.png")
	run(t, admin, chromedp.Click(chromedp.CSS(fmt.Sprintf(`form[data-hold=%q] button`, proposed[0].ID))),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	if h, _ := s.admin.Holds(ctx, "agent", "active"); len(h) != 1 || h[0].ID != proposed[0].ID {
		t.Fatalf("active holds after activating: %+v", h)
	}

	// A hold's rule is checked as it is typed; a valid one creates the hold.
	run(t, admin, chromedp.Navigate(s.url+"/ui/holds"), chromedp.WaitVisible(chromedp.ID("rule")),
		chromedp.SendKeys(chromedp.ID("rule"), `device.attributes["oem"] ==`), chromedp.WaitVisible(chromedp.CSS(".rule-check.invalid")))
	if msg := text(t, admin, "#rule-check"); msg == "" || strings.Contains(msg, "valid.") {
		t.Fatalf("a broken rule is checked as %q", msg)
	}
	run(t, admin, chromedp.SendKeys(chromedp.ID("rule"), ` "fabrikam"`), chromedp.WaitVisible(chromedp.CSS(".rule-check.valid")),
		chromedp.SendKeys(chromedp.CSS(`#hold-form input[name=reason]`), "fabrikam boot loop under investigation"),
		chromedp.Submit(chromedp.ID("rule")), chromedp.WaitVisible(chromedp.CSS(".flash.ok")))
	if h, _ := s.admin.Holds(ctx, "", "active"); len(h) != 2 {
		t.Fatalf("active holds after creating one in the console: %+v", h)
	}

	// Explain a device: why the held contoso device is not offered agent 2.0.
	run(t, admin, chromedp.Navigate(s.url+"/ui/devices?product=agent"), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	screenshot(t, admin, "console-devices.png")
	run(t, admin, chromedp.Navigate(s.url+"/ui/devices/fleet-000"), chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)))
	if o := text(t, admin, "#outcomes"); !strings.Contains(o, "agent 2.0: install_failed in wave 1") {
		t.Fatalf("fleet-000's reported outcomes: %q", o)
	}
	if o := text(t, admin, "#offers"); !strings.Contains(o, "agent 2.0 offered in wave 1") {
		t.Fatalf("fleet-000's offers: %q", o)
	}
	run(t, admin,
		chromedp.Click(chromedp.CSS(`#explain-h + form button`)), chromedp.WaitVisible(chromedp.ID("#explanation")))
	if ex := text(t, admin, "#explanation"); !strings.Contains(ex, "agent 2.0") || !strings.Contains(ex, proposed[0].ID) {
		t.Fatalf("explanation of a held device:\n%s", ex)
	}

	// Every control on every page has a label, and on a phone the pages
	// fit the screen (only wide tables scroll sideways, inside themselves).
	for _, page := range []string{"/ui/", "/ui/deployments", "/ui/deployments/" + gated.ID, "/ui/catalog", "/ui/holds", "/ui/rings",
		"/ui/devices", "/ui/devices/fleet-000", "/ui/audit", "/ui/admin"} {
		run(t, admin, chromedp.Navigate(s.url+page), chromedp.WaitVisible(chromedp.CSS("main h1")))
		unlabelled := result(t, admin, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea"))
			.filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
			.map(e => e.outerHTML)`))
		if len(unlabelled) > 0 {
			t.Errorf("%s has controls without a label: %v", page, unlabelled)
		}
	}
	run(t, admin, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	for _, page := range []string{"/ui/", "/ui/deployments/" + gated.ID, "/ui/devices?product=agent"} {
		run(t, admin, chromedp.Navigate(s.url+page), chromedp.WaitVisible(chromedp.CSS("main h1")))
		if w := result(t, admin, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			t.Errorf("%s is %d px wide on a 390 px phone", page, w)
		}
		if page == "/ui/" {
			screenshot(t, admin, "console-phone.png")
		}
	}
	run(t, admin, chromedp.EmulateReset())

	// A viewer sees the deployment but no action, and a forged form post
	// (one without the session's anti-forgery token) is refused.
	viewer := tab(t, b)
	run(t, viewer, chromedp.Navigate(s.url+"/ui/deployments/"+gated.ID), chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.SendKeys(chromedp.ID("#token"), s.newToken(t, "watcher", "viewer")), chromedp.Submit(chromedp.ID("#token")),
		chromedp.WaitVisible(chromedp.ID("#deployment-state")))
	if buttons := result(t, viewer, chromedp.Evaluate[int](`document.querySelectorAll("main button").length`)); buttons != 0 {
		t.Fatalf("a viewer sees %d buttons on a deployment page", buttons)
	}
	result(t, viewer, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const f = document.createElement("form"); f.method = "post";
		f.action = "/ui/deployments/%s/resume"; const r = document.createElement("input"); r.name = "reason"; r.value = "forged";
		f.appendChild(r); document.body.appendChild(f); f.submit(); return true; })()`, gated.ID)))
	run(t, viewer, chromedp.WaitVisible(chromedp.CSS(".flash.error")))
	if msg := text(t, viewer, ".flash.error"); !strings.Contains(msg, "anti-forgery token") {
		t.Fatalf("forged post answered %q", msg)
	}
	if d, _ := s.admin.Deployment(ctx, gated.ID); d.State != "paused" {
		t.Fatalf("the forged post changed the deployment: %s", d.State)
	}

	// Sign-out ends the session: the console asks to sign in again.
	run(t, admin, chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS(".who button")),
		chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitVisible(chromedp.ID("#token")),
		chromedp.Navigate(s.url+"/ui/deployments"), chromedp.WaitVisible(chromedp.ID("#token")))
}
