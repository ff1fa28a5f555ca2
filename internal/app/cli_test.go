package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/cli"
)

// run runs the ringmaster command line in-process and returns stdout.
func run(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, &out, &errb)
	if code != 0 {
		return out.String(), &cliError{code: code, stderr: errb.String()}
	}
	return out.String(), nil
}

type cliError struct {
	code   int
	stderr string
}

func (e *cliError) Error() string { return e.stderr }

// TestCLI drives the interface commands other tools depend on: publish
// prints the update id, deploy prints the deployment id, deployment
// cancel/show, with RINGMASTER_URL and RINGMASTER_TOKEN.
func TestCLI(t *testing.T) {
	s := startServer(t, "")
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	path, sum := writeRandomFile(t, 2<<20)
	notes := filepath.Join(t.TempDir(), "notes.md")
	os.WriteFile(notes, []byte("Fixes the frobnicator."), 0o600)

	out, err := run(t, env, "publish", "--product", "contoso-agent", "--version", "2.1.0", "--kind", "app",
		"--severity", "important", "--release-notes-file", notes, path)
	if err != nil {
		t.Fatal(err)
	}
	updateID := strings.TrimSpace(out)
	if !strings.HasPrefix(updateID, "upd_") || strings.Contains(updateID, "\n") {
		t.Fatalf("publish printed %q; want only the update id", out)
	}
	u, err := s.admin.Update(context.Background(), updateID)
	if err != nil || u.State != "published" || u.Kind != "app" || u.Severity != "important" ||
		u.ReleaseNotes != "Fixes the frobnicator." || u.Payloads[0].SHA256 != sum {
		t.Fatalf("published update = %+v, %v", u, err)
	}
	// Same files, same version: same id.
	if again, err := run(t, env, "publish", "--product", "contoso-agent", "--version", "2.1.0", "--kind", "app",
		"--severity", "important", "--release-notes-file", notes, path); err != nil || strings.TrimSpace(again) != updateID {
		t.Fatalf("republish printed %q, %v", again, err)
	}

	// Baked for a day, it is still running when shown below (one wave
	// without a bake completes at the controller's next tick).
	out, err = run(t, env, "deploy", "--product", "contoso-agent", "--version", "2.1.0", "--bake", "24h")
	depID := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(depID, "dep_") {
		t.Fatalf("deploy printed %q, %v", out, err)
	}
	resp, err := s.device.CheckIn(context.Background(), client.CheckInRequest{DeviceID: "d1",
		Installed: []client.Installed{{Product: "contoso-agent", Version: "2.0.9"}}})
	if err != nil || len(resp.Offers) != 1 || resp.Offers[0].UpdateID != updateID {
		t.Fatalf("check-in after CLI deploy: %+v, %v", resp, err)
	}

	out, err = run(t, env, "deployment", "show", depID)
	var d client.Deployment
	if err != nil || json.Unmarshal([]byte(out), &d) != nil || d.ID != depID || d.State != "running" {
		t.Fatalf("deployment show: %q, %v", out, err)
	}
	if out, err = run(t, env, "deployment", "list"); err != nil || !strings.Contains(out, depID) {
		t.Fatalf("deployment list: %q, %v", out, err)
	}
	if out, err = run(t, env, "update", "list", "--product", "contoso-agent"); err != nil || !strings.Contains(out, updateID) {
		t.Fatalf("update list: %q, %v", out, err)
	}
	if out, err = run(t, env, "deployment", "cancel", depID, "--reason", "bad build"); err != nil || !strings.Contains(out, "cancelled") {
		t.Fatalf("deployment cancel: %q, %v", out, err)
	}
	if d, _ := s.admin.Deployment(context.Background(), depID); d.Reason != "bad build" || !strings.HasPrefix(d.CreatedBy, "token:") {
		t.Fatalf("cancelled deployment = %+v", d)
	}

	// Errors exit non-zero with the server's explanation.
	if _, err := run(t, env, "deploy", "--product", "contoso-agent", "--version", "9.9.9"); err == nil ||
		!strings.Contains(err.Error(), "no version 9.9.9") {
		t.Fatalf("deploy of a missing version: %v", err)
	}
	if _, err := run(t, map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": "rmt_" + strings.Repeat("1", 64)},
		"product", "list"); err == nil || !strings.Contains(err.Error(), "unknown token") {
		t.Fatalf("bad token: %v", err)
	}
	// Without a token, the CLI uses the admin token file in --data.
	if out, err := run(t, map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": ""}, "product", "list", "--data", s.data); err != nil ||
		!strings.Contains(out, "contoso-agent") {
		t.Fatalf("product list with the token file: %q, %v", out, err)
	}
}

// TestOperations checks health, readiness, metrics and graceful shutdown.
func TestOperations(t *testing.T) {
	s := startServer(t, "")
	get := func(path string) (int, string) {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"database":"ok"`) {
		t.Fatalf("readyz: %d %s", code, body)
	}
	if code, body := get("/v1/openapi.yaml"); code != 200 || !strings.Contains(body, "/v1/device/check") {
		t.Fatalf("openapi: %d", code)
	}
	path, _ := writeRandomFile(t, 1000)
	if _, err := s.admin.PublishFiles(context.Background(), client.NewUpdate{Product: "p", Version: "1"}, []string{path}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.device.CheckIn(context.Background(), client.CheckInRequest{DeviceID: "m1"})
	}
	_, metrics := get("/metrics")
	for _, want := range []string{
		"ringmaster_checkins_total 3",
		"ringmaster_publishes_total 1",
		`ringmaster_http_requests_total{code="200",method="POST",route="POST /v1/device/check"} 3`,
		`ringmaster_http_request_duration_seconds_count{method="POST",route="POST /v1/device/check"} 3`,
		"ringmaster_snapshot_generation",
		"go_goroutines",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Responses carry a request id; a sane incoming one is kept.
	req, _ := http.NewRequest("GET", s.url+"/healthz", nil)
	req.Header.Set("X-Request-Id", "trace-123")
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") != "trace-123" {
		t.Fatalf("request id %q", resp.Header.Get("X-Request-Id"))
	}
}

// TestShutdownFlushesRegistry checks that sightings buffered when the server
// stops are written, not lost.
func TestShutdownFlushesRegistry(t *testing.T) {
	data := t.TempDir()
	c := startChild(t, data, "", "RINGMASTER_REGISTRY_FLUSH=1h")
	dev, _ := client.New(c.url, "")
	for i := 0; i < 5; i++ {
		if _, err := dev.CheckIn(context.Background(), client.CheckInRequest{DeviceID: "dev-" + string(rune('a'+i)),
			Attributes: map[string]string{"n": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(t) // SIGTERM: graceful
	db := openDB(t, data, "")
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM devices`).Scan(&n); err != nil || n != 5 {
		t.Fatalf("devices after graceful shutdown = %d (%v), want 5", n, err)
	}
}
