package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

func publishSmall(t *testing.T, s *server, product, ver string) client.Update {
	t.Helper()
	path, _ := writeRandomFile(t, 256)
	u, err := s.admin.PublishFiles(context.Background(), client.NewUpdate{Product: product, Version: ver}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func fleet(n int, product, ver string) []client.CheckInRequest {
	out := make([]client.CheckInRequest, n)
	oems := []string{"contoso", "fabrikam", "northwind", "tailspin"}
	for i := range out {
		out[i] = client.CheckInRequest{DeviceID: fmt.Sprintf("dev-%04d", i),
			Attributes: map[string]string{"oem": oems[i%len(oems)], "arch": "x64"},
			Installed:  []client.Installed{{Product: product, Version: ver}}}
	}
	return out
}

// offeredSet returns the ids of the devices offered anything.
func offeredSet(t *testing.T, s *server, devs []client.CheckInRequest) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, d := range devs {
		r, err := s.device.CheckIn(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Offers) > 0 {
			out[d.DeviceID] = true
		}
	}
	return out
}

// TestHoldsPauseAndRulesOverHTTP: a hold blocks exactly the matching
// devices and releasing it restores them; pause and resume reach the next
// check-in; rules that do not type-check or are too expensive are refused
// with a message that says so.
func TestHoldsPauseAndRulesOverHTTP(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	publishSmall(t, s, "agent", "2.0")
	d, err := s.admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	devs := fleet(200, "agent", "1.0")
	if got := offeredSet(t, s, devs); len(got) != 200 {
		t.Fatalf("%d of 200 offered", len(got))
	}

	h, err := s.admin.CreateHold(ctx, "agent", "2.0", `device.attributes.oem == "contoso"`, "contoso firmware bricks on 2.0")
	if err != nil {
		t.Fatal(err)
	}
	got := offeredSet(t, s, devs)
	for _, dv := range devs {
		held := dv.Attributes["oem"] == "contoso"
		if got[dv.DeviceID] == held {
			t.Fatalf("%s (oem %s) offered=%v with the hold active", dv.DeviceID, dv.Attributes["oem"], got[dv.DeviceID])
		}
	}
	if _, err := s.admin.ReleaseHold(ctx, h.ID, "fabrikam fixed its firmware"); err != nil {
		t.Fatal(err)
	}
	if got := offeredSet(t, s, devs); len(got) != 200 {
		t.Fatalf("%d of 200 offered after releasing the hold", len(got))
	}

	if _, err := s.admin.Command(ctx, d.ID, "pause", "investigating"); err != nil {
		t.Fatal(err)
	}
	if got := offeredSet(t, s, devs); len(got) != 0 {
		t.Fatalf("%d offered while paused", len(got))
	}
	if _, err := s.admin.Command(ctx, d.ID, "resume", "fine"); err != nil {
		t.Fatal(err)
	}
	if got := offeredSet(t, s, devs); len(got) != 200 {
		t.Fatalf("%d offered after resume", len(got))
	}

	for _, bad := range []struct{ rule, want string }{
		{`device.attributes.oem = "x"`, "does not compile"},
		{`device.atributes.oem == "x"`, "does not compile"},
		{`device.attributes.all(a, device.attributes.all(b, device.attributes.all(c, a + b + c != "")))`, "too expensive"},
		{`device.attributes.oem`, "must be a boolean"},
	} {
		_, err := s.admin.CreateHold(ctx, "agent", "", bad.rule, "x")
		if !client.IsKind(err, "invalid") || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("hold with rule %q: %v, want invalid mentioning %q", bad.rule, err, bad.want)
		}
	}
	if _, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Audience: "device.nope"}); !client.IsKind(err, "invalid") ||
		!strings.Contains(err.Error(), "plan.audience") {
		t.Errorf("deploy with a bad audience: %v", err)
	}
	_, err = s.admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "3.0", Applicability: `device.id > 3`,
		Payloads: []client.NewPayload{{Name: "x", SHA256: strings.Repeat("a", 64), Size: 1}}})
	if !client.IsKind(err, "invalid") || !strings.Contains(err.Error(), "applicability") {
		t.Errorf("update with a bad applicability rule: %v", err)
	}
	if hs, _ := s.admin.Holds(ctx, "agent", ""); len(hs) != 1 {
		t.Fatalf("refused holds were stored: %+v", hs)
	}
}

// TestExplainCLI shows the failing step for the kinds of "not offered".
func TestExplainCLI(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	publishSmall(t, s, "agent", "2.0")
	u3 := publishSmall(t, s, "agent", "3.0")
	if _, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Audience: `device.attributes.arch == "x64"`}); err != nil {
		t.Fatal(err)
	}
	d3, err := s.admin.DeployPlan(ctx, "agent", "3.0", client.Plan{Waves: []client.Wave{{Percent: 0.001}, {Percent: 100}}, Bake: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := run(t, env, "explain", "--device-id", "laptop-1", "--attr", "arch=arm64", "--installed", "agent=1.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"agent 3.0 (" + u3.ID + ", deployment " + d3.ID + "): not offered: wave",
		"FAIL wave",
		"agent 2.0",
		"not offered: audience",
		`FAIL audience           device.attributes.arch == "x64"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, env, "deployment", "pause", d3.ID, "--reason", "crash spike"); err != nil {
		t.Fatal(err)
	}
	hold, err := run(t, env, "hold", "create", "--product", "agent", "--version", "2.0", "--rule", `device.id == "laptop-1"`, "--reason", "lab device")
	if err != nil || !strings.HasPrefix(hold, "hld_") {
		t.Fatalf("hold create: %q, %v", hold, err)
	}
	out, _ = run(t, env, "explain", "--device-id", "laptop-1", "--attr", "arch=x64", "--installed", "agent=1.0")
	for _, want := range []string{"not offered: deployment", "paused (by token:", "reason: crash spike", "not offered: hold", "lab device"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, _ = run(t, env, "explain", "--device-id", "laptop-1", "--attr", "arch=x64", "--installed", "agent=3.0")
	if !strings.Contains(out, "not offered: newer") {
		t.Errorf("explain for an up-to-date device:\n%s", out)
	}
	// A registered device is explained from the registry.
	s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: "laptop-2", Attributes: map[string]string{"arch": "x64"},
		Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = run(t, env, "explain", "--device-id", "laptop-2")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, "(registry)") || !strings.Contains(out, "agent 2.0") || !strings.Contains(out, "OFFERED") {
		t.Fatalf("explain from the registry: %v\n%s", err, out)
	}
}

// TestKillDuringRollout kills the server with SIGKILL while a rollout is in
// its second wave; after a restart it continues from that wave and no wave
// starts twice.
func TestKillDuringRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	data := t.TempDir()
	tick := "RINGMASTER_ROLLOUT_TICK=1s"
	c := startChild(t, data, "", tick)
	admin := adminClient(t, c.url, data)
	ctx := context.Background()
	path, _ := writeRandomFile(t, 256)
	if _, err := admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{path}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 50, Bake: "1h"}, {Percent: 100}}, Bake: "2s", NoGate: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, func() bool {
		d, err = admin.Deployment(ctx, d.ID)
		return err == nil && d.Wave == 1
	})
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done

	c = startChild(t, data, "", tick)
	admin = adminClient(t, c.url, data)
	if d, err = admin.Deployment(ctx, d.ID); err != nil || d.Wave != 1 || d.Percent != 50 {
		t.Fatalf("after restart: %+v, %v", d, err)
	}
	// The controller keeps ticking after the restart (wave 2 bakes an hour):
	// an operator's advance moves it on, and it completes by itself.
	if d, err = admin.Command(ctx, d.ID, "advance", "skip the long bake"); err != nil || d.Wave != 2 {
		t.Fatalf("advance: %+v, %v", d, err)
	}
	waitFor(t, 90*time.Second, func() bool {
		d, err = admin.Deployment(ctx, d.ID)
		return err == nil && d.State == "completed"
	})
	evs, err := admin.DeploymentEvents(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[int]int{}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
		if e.Kind == "wave_started" || e.Kind == "advanced" {
			starts[e.Wave]++
		}
	}
	if starts[0] != 1 || starts[1] != 1 || starts[2] != 1 || kinds[len(kinds)-1] != "completed" {
		t.Fatalf("events after a crash: %v", kinds)
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	apptest.WaitFor(t, limit, cond)
}

// TestRetryFailedPublish: a publish that failed (its staged bytes no longer
// match the declared hash, as after a disk fault) is retried by publishing
// the same version again: same update, uploaded afresh, published.
func TestRetryFailedPublish(t *testing.T) {
	s := startServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	path, sum := writeRandomFile(t, 4096)
	if _, err := s.admin.PutProduct(ctx, client.Product{Name: "agent"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "1.0",
		Payloads: []client.NewPayload{{Name: "agent.bin", SHA256: sum, Size: 4096}}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	err = s.admin.Upload(ctx, u.ID, u.Payloads[0], f, client.UploadOptions{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(s.data, "content", "staging", u.ID, sum+".part")
	if err := os.WriteFile(staged, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.Publish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	failed, err := s.admin.WaitPublished(ctx, u.ID, 50*time.Millisecond)
	if err == nil || failed.State != "failed" || !strings.Contains(failed.FailureReason, "hash mismatch") {
		t.Fatalf("publishing corrupted bytes: %+v, %v", failed, err)
	}
	if _, err := s.admin.Publish(ctx, u.ID); !client.IsKind(err, "conflict") || !strings.Contains(err.Error(), "create agent 1.0 again") {
		t.Fatalf("publishing a failed update again: %v", err)
	}
	// The retry is the same command as the first publish.
	got, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0"}, []string{path}, client.PublishOptions{})
	if err != nil || got.ID != u.ID || got.State != "published" || got.FailureReason != "" {
		t.Fatalf("retried publish: %+v, %v", got, err)
	}
	es, err := s.admin.Audit(ctx, client.AuditFilter{Target: u.ID})
	var actions []string
	for _, e := range es {
		actions = append(actions, e.Action)
	}
	if err != nil || !slices.Contains(actions, "update.failed") || !slices.Contains(actions, "update.retry") || !slices.Contains(actions, "update.published") {
		t.Fatalf("audit of the update: %v, %v", actions, err)
	}
}
