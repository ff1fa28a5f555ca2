package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
)

// rawRequest writes head and body on a new connection, half-closes it when
// hangUp is set, and returns the status line of the answer (or the read
// error). The client-side deadline only stops a broken test from hanging.
func rawRequest(t *testing.T, addr, head, body string, hangUp bool) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(head + "\r\n" + body)); err != nil {
		return "", err
	}
	if hangUp {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestSlowAndBrokenClients: a body cut short is the client's fault (400,
// not 500); a body that never arrives is cut off by body_timeout instead of
// holding the connection; honest clients are served meanwhile.
func TestSlowAndBrokenClients(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) {
		c.BodyTimeout = time.Second
		c.MaxConnsPerSource = 4
	})
	addr := strings.TrimPrefix(s.url, "http://")
	head := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: ringmaster\r\nContent-Length: 60000\r\n"
	}
	for _, path := range []string{"/v1/device/check", "/v1/device/events"} {
		if line, err := rawRequest(t, addr, head(path), `{"device_id":`, true); err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("truncated body on %s: %q, %v; want 400", path, line, err)
		}
		// Declares 60,000 bytes, sends 13 and waits: the server answers
		// once body_timeout has passed instead of waiting for the rest.
		if line, err := rawRequest(t, addr, head(path), `{"device_id":`, false); err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("stalled body on %s: %q, %v; want 400", path, line, err)
		}
	}

	// The connection cap is on (its behaviour is TestLimitConnsPerSource's):
	// honest clients are still served.
	dev, _ := client.New(s.url, "")
	if _, err := dev.CheckIn(context.Background(), client.CheckInRequest{DeviceID: "honest-1"}); err != nil {
		t.Fatalf("an honest check-in after the broken ones: %v", err)
	}
	// The broken requests above were client errors: none counted as a 5xx.
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "ringmaster_http_requests_total") && strings.Contains(l, `code="5`) {
			t.Errorf("a broken client's request counted as a server error: %s", l)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

// TestCLIForNewcomers: the command line's rough edges a newcomer met, each
// kept fixed: a version, unknown subcommands fail, a refused or missing
// token says where it looked, durations in days, reasons required, one
// approval approves one wave, and unset values are not shown.
func TestCLIForNewcomers(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out, err := run(t, nil, args...); err != nil || !strings.HasPrefix(out, "ringmaster ") {
			t.Errorf("%v: %q, %v", args, out, err)
		}
	}
	for _, args := range [][]string{{"ring", "rename", "x"}, {"device", "frobnicate", "x"}, {"bogus"}} {
		_, err := run(t, nil, args...)
		var ce *cliError
		if !errors.As(err, &ce) || ce.code == 0 || !strings.Contains(ce.stderr, "unknown command") {
			t.Errorf("%v: %v; want an unknown-command error and a non-zero exit", args, err)
		}
	}
	if out, _ := run(t, nil, "deploy", "--help"); !strings.Contains(out, "--order string") {
		t.Errorf("deploy --help renders --order as:\n%s", out)
	}

	s := startServer(t, "")
	empty := t.TempDir()
	_, err := run(t, map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": "", "RINGMASTER_DATA": empty}, "deployment", "list")
	if err == nil || !strings.Contains(err.Error(), "no API token") || !strings.Contains(err.Error(), empty+"/admin.token") {
		t.Errorf("no token anywhere: %v", err)
	}
	_, err = run(t, map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": "rmt_bad"}, "deployment", "list")
	if err == nil || !strings.Contains(err.Error(), "not a Ringmaster API token") || !strings.Contains(err.Error(), "--token or RINGMASTER_TOKEN") {
		t.Errorf("a malformed token: %v", err)
	}

	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token, "RINGMASTER_DATA": empty}
	ctx := context.Background()
	if _, err := run(t, env, "token", "create", "--name", "ci", "--role", "viewer", "--ttl", "90d"); err != nil {
		t.Errorf("--ttl 90d: %v", err)
	}
	if toks, err := s.admin.Tokens(ctx); err != nil || !slices.ContainsFunc(toks, func(tk client.Token) bool {
		return tk.Name == "ci" && tk.ExpiresAt != nil && time.Until(*tk.ExpiresAt).Round(time.Hour) == 90*24*time.Hour
	}) {
		t.Errorf("a token for 90 days: %+v, %v", toks, err)
	}
	if _, err := run(t, env, "token", "create", "--name", "x", "--role", "viewer", "--ttl", "5x"); err == nil ||
		strings.Contains(err.Error(), "time:") || !strings.Contains(err.Error(), "90d") {
		t.Errorf("--ttl 5x: %v; want a clear error", err)
	}

	publishSmall(t, s, "agent", "1.0")
	out, err := run(t, env, "deploy", "--product", "agent", "--version", "1.0", "--waves", "1,10,100", "--bake", "1d", "--require-approval")
	if err != nil {
		t.Fatal(err)
	}
	depID := strings.TrimSpace(out)
	d, err := s.admin.Deployment(ctx, depID)
	if err != nil || d.Plan.Bake != "24h0m0s" || d.Wave != -1 || d.Approved != -1 || !d.AwaitingApproval {
		t.Fatalf("deploy --bake 1d: %+v, %v", d, err)
	}
	out, _ = run(t, env, "deployment", "show", depID)
	var shown map[string]any
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatal(err)
	}
	for _, unset := range []string{"wave", "approved", "wave_started"} {
		if v, ok := shown[unset]; ok {
			t.Errorf("deployment show before the first wave shows %s: %v", unset, v)
		}
	}
	if strings.Contains(out, "0001-01-01") || strings.Contains(out, `"wave": -1`) {
		t.Errorf("deployment show leaks unset values:\n%s", out)
	}
	if out, _ := run(t, env, "deployment", "list"); !strings.Contains(out, "awaiting approval of wave 1 of 3") {
		t.Errorf("deployment list:\n%s", out)
	}
	for _, args := range [][]string{{"deployment", "approve", depID}, {"deployment", "pause", depID}, {"hold", "release", "hld_00000000000000000000000000"}} {
		if _, err := run(t, env, args...); err == nil || !strings.Contains(err.Error(), `"reason" not set`) {
			t.Errorf("%v without --reason: %v", args, err)
		}
	}
	if out, err := run(t, env, "deployment", "approve", depID, "--reason", "go"); err != nil || !strings.Contains(out, "running, wave 1 of 3 at 1%") {
		t.Fatalf("approve: %q, %v", out, err)
	}
	// The second wave has not asked: approving again is refused, and the
	// deployment still waits for an approval after wave 1 has baked.
	if _, err := run(t, env, "deployment", "approve", depID, "--reason", "again"); err == nil || !strings.Contains(err.Error(), "no wave is waiting for approval") {
		t.Errorf("a second approval: %v", err)
	}
	if d, err := s.admin.Deployment(ctx, depID); err != nil || d.Approved != 0 || d.Wave != 0 {
		t.Errorf("after one approval: approved %d, wave %d, %v", d.Approved, d.Wave, err)
	}
	if _, err := run(t, env, "deployment", "advance", depID, "--reason", "skip the bake"); err == nil || !strings.Contains(err.Error(), "needs approval") {
		t.Errorf("advance past an unapproved wave: %v", err)
	}
}

// TestRotateOnlineValidates: rotating the online keys reads its body like
// every admin route and needs a reason; garbage rotates nothing.
func TestRotateOnlineValidates(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	before, err := s.admin.TUFStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ contentType, body string }{
		{"application/json", ""},
		{"application/json", `{}`},
		{"application/json", `{"reason":"  "}`},
		{"application/json", `{"reason":"x","extra":1}`},
		{"application/json", `not json`},
		{"text/plain", `{"reason":"looks fine"}`},
	} {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/tuf-admin/rotate-online", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.contentType)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("rotate-online with %s %q: %d %s, want a 400 problem", tc.contentType, tc.body, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	after, err := s.admin.TUFStatus(ctx)
	if err != nil || after["root"].Version != before["root"].Version || !slices.Equal(after["timestamp"].KeyIDs, before["timestamp"].KeyIDs) {
		t.Fatalf("refused rotations changed the keys: %+v -> %+v, %v", before, after, err)
	}
	if res, err := s.admin.RotateOnlineKeys(ctx, "scheduled rotation"); err != nil || !res.Applied {
		t.Fatalf("a rotation with a reason: %+v, %v", res, err)
	}
	// The audit log lists newest first: one rotation, with its reason.
	es, err := s.admin.Audit(ctx, client.AuditFilter{Action: "tuf.rotate_online"})
	if err != nil || len(es) != 1 || es[0].Reason != "scheduled rotation" {
		t.Fatalf("the rotation's audit entries: %d, %v", len(es), err)
	}
}
