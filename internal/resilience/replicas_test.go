package resilience

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/s3test"
)

// replica starts a second server on a's PostgreSQL database, with a's
// admin token, and snapshot polling slowed to an hour: what it learns of
// a's changes comes from LISTEN/NOTIFY. Its signing keys come from the
// database, as every replica's do on PostgreSQL.
func replica(t *testing.T, a *apptest.Server, dsn string, mut func(*config.Config)) *apptest.Server {
	t.Helper()
	data := t.TempDir()
	b, err := os.ReadFile(filepath.Join(a.Data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "admin.token"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return apptest.Start(t, dsn, func(c *config.Config) {
		c.DataDir = data
		c.SnapshotPoll = time.Hour
		c.DeviceRate.Rate = 0 // the test's device asks many times a second
		if mut != nil {
			mut(c)
		}
	})
}

// TestReplicaSeesChangesAtOnce: a deployment made through one replica is
// offered by another sharing its PostgreSQL database without waiting for
// a poll, and so is its halt.
func TestReplicaSeesChangesAtOnce(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	a := apptest.Start(t, dsn, func(c *config.Config) { c.SnapshotPoll = time.Hour })
	file := filepath.Join(t.TempDir(), "agent.bin")
	if err := os.WriteFile(file, []byte("agent 2.0"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Published before the replica starts: the two keep content in
	// their own directories here, and both run pipeline jobs.
	if _, err := a.Admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b := replica(t, a, dsn, nil)
	device, _ := client.New(b.URL, "")
	offers := func() int {
		r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Offers)
	}
	if n := offers(); n != 0 {
		t.Fatalf("offered %d before any deployment", n)
	}
	dep, err := a.Admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	// An hour's poll cannot explain it: only the notification can.
	apptest.WaitFor(t, 30*time.Second, func() bool { return offers() == 1 })
	if _, err := a.Admin.Command(ctx, dep.ID, "halt", "bad build"); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool { return offers() == 0 })
}

// TestSharedSigningKeys: replicas on one PostgreSQL database and one S3
// bucket sign with the same keys, kept sealed in the database, so an
// update published through one is offered, downloaded and verified
// through the other. A replica whose passphrase does not open the keys,
// or that keeps its keys in files, starts, says at once that it cannot
// sign, and /readyz reports it not ready with the reason.
func TestSharedSigningKeys(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	srv := s3test.Start(t)
	srv.SetEnv(t)
	a := apptest.Start(t, dsn, srv.Apply)
	b := replica(t, a, dsn, srv.Apply)
	wrongPass := replica(t, a, dsn, func(c *config.Config) {
		srv.Apply(c)
		c.TUF.Passphrase = "not the one the keys were sealed with"
	})
	files := replica(t, a, dsn, func(c *config.Config) {
		srv.Apply(c)
		c.TUF.Keyring = "files"
	})
	for _, s := range []*apptest.Server{a, b, wrongPass, files} {
		res, err := http.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var checks map[string]string
		json.NewDecoder(res.Body).Decode(&checks)
		res.Body.Close()
		signs := s == a || s == b
		want := http.StatusOK
		if !signs {
			want = http.StatusServiceUnavailable
		}
		if res.StatusCode != want || signs != (checks["signing"] == "ok") {
			t.Fatalf("/readyz of %s: %d %v", s.URL, res.StatusCode, checks)
		}
		if !signs && !strings.Contains(checks["signing"], "too few signing keys for targets") {
			t.Fatalf("/readyz signing check of a replica that cannot sign: %q", checks["signing"])
		}
	}

	// The replica that made the keys keeps copies as key files, for the
	// offline-root workflow.
	if files, _ := filepath.Glob(filepath.Join(a.Data, "keys", "*.key")); len(files) < 4 {
		t.Fatalf("the first replica keeps %d key files, want root, targets, snapshot and timestamp", len(files))
	}
	apptest.Publish(t, b.Admin, "agent", "2.0", "agent 2.0, published through the second replica")
	if _, err := b.Admin.Deploy(ctx, "agent", "2.0"); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get(a.URL + "/v1/tuf/1.root.json")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(res.Body)
	res.Body.Close()
	device, _ := client.New(a.URL, a.DeviceCredential("dev-1"))
	var r client.CheckInResponse
	apptest.WaitFor(t, 30*time.Second, func() bool {
		r, err = device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		return err == nil && len(r.Offers) == 1
	})
	up, err := device.NewUpdater(client.UpdaterConfig{TrustedRoot: root, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	paths, err := up.Fetch(ctx, r.Offers[0], t.TempDir())
	if err != nil || len(paths) != 1 {
		t.Fatalf("the first replica verifying and serving what the second published: %v", err)
	}
	if got, _ := os.ReadFile(paths[0]); string(got) != "agent 2.0, published through the second replica" {
		t.Fatalf("installed %q", got)
	}
}

// TestRoles: a fleet of a device replica, an api replica and a worker
// replica is one service. An update published through the api replica is
// ingested and signed by the worker (the api replica runs no jobs) and
// offered by the device replica; each replica refuses what its role does
// not serve, naming the role that does.
func TestRoles(t *testing.T) {
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	srv := s3test.Start(t)
	srv.SetEnv(t)
	api := apptest.Start(t, dsn, func(c *config.Config) { srv.Apply(c); c.Role = "api" })
	role := func(r string) func(*config.Config) { return func(c *config.Config) { srv.Apply(c); c.Role = r } }
	worker := replica(t, api, dsn, role("worker"))
	device := replica(t, api, dsn, role("device"))

	apptest.Publish(t, api.Admin, "agent", "3.0", "agent 3.0")
	if _, err := api.Admin.Deploy(ctx, "agent", "3.0"); err != nil {
		t.Fatal(err)
	}
	dev, _ := client.New(device.URL, device.DeviceCredential("dev-1"))
	apptest.WaitFor(t, 30*time.Second, func() bool {
		r, err := dev.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
		return err == nil && len(r.Offers) == 1
	})

	for _, c := range []struct {
		s        *apptest.Server
		method   string
		path     string
		want     int
		mentions string
	}{
		{device, "GET", "/v1/updates", http.StatusNotFound, "role api"},
		{device, "GET", "/ui/", http.StatusNotFound, "role api"},
		{api, "POST", "/v1/device/check", http.StatusNotFound, "role device"},
		{worker, "POST", "/v1/device/check", http.StatusNotFound, "role device"},
		{worker, "GET", "/v1/updates", http.StatusNotFound, "role api"},
		{worker, "GET", "/v1/tuf/1.root.json", http.StatusNotFound, "role device or api"},
		{api, "GET", "/v1/tuf/1.root.json", http.StatusOK, ""},
		{device, "GET", "/v1/tuf/1.root.json", http.StatusOK, ""},
		{worker, "GET", "/readyz", http.StatusOK, ""},
		{device, "GET", "/readyz", http.StatusOK, "not needed (role device)"},
	} {
		req, _ := http.NewRequest(c.method, c.s.URL+c.path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+api.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want || !strings.Contains(string(body), c.mentions) {
			t.Errorf("%s %s on the %s replica: %d %s", c.method, c.path, c.s.App.Role(), res.StatusCode, body)
		}
	}
}
