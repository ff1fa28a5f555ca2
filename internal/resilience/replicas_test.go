package resilience

import (
	"context"
	"encoding/json"
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
)

// replica starts a second server on a's PostgreSQL database, with a's
// signing keys (the same directory and passphrase) and admin token, and
// snapshot polling slowed to an hour: what it learns of a's changes comes
// from LISTEN/NOTIFY.
func replica(t *testing.T, a *apptest.Server, dsn string) *apptest.Server {
	t.Helper()
	data := t.TempDir()
	for _, f := range []string{"admin.token", "keys.passphrase"} {
		b, err := os.ReadFile(filepath.Join(a.Data, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return apptest.Start(t, dsn, func(c *config.Config) {
		c.DataDir = data
		c.TUF.KeysDir = filepath.Join(a.Data, "keys")
		c.SnapshotPoll = time.Hour
		c.DeviceRate.Rate = 0 // the test's device asks many times a second
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
	// Published before the replica starts: content is still each
	// replica's own (S3 is not built yet), and both run pipeline jobs.
	if _, err := a.Admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	b := replica(t, a, dsn)
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

// TestReplicaWithoutKeys: a replica given the database but not the
// signing keys starts, says at once that it cannot sign, and /readyz
// reports it not ready with the reason, instead of failing publishes
// silently.
func TestReplicaWithoutKeys(t *testing.T) {
	dsn := dbtest.Postgres(t)
	a := apptest.Start(t, dsn, nil)
	data := t.TempDir()
	b, err := os.ReadFile(filepath.Join(a.Data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "admin.token"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	keyless := apptest.Start(t, dsn, func(c *config.Config) { c.DataDir = data })
	for _, s := range []*apptest.Server{a, keyless} {
		res, err := http.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var checks map[string]string
		json.NewDecoder(res.Body).Decode(&checks)
		res.Body.Close()
		want := http.StatusOK
		if s == keyless {
			want = http.StatusServiceUnavailable
		}
		if res.StatusCode != want || (s == keyless) == (checks["signing"] == "ok") {
			t.Fatalf("/readyz of %s: %d %v", s.URL, res.StatusCode, checks)
		}
		if s == keyless && !strings.Contains(checks["signing"], "too few signing keys for targets") {
			t.Fatalf("/readyz signing check of the keyless replica: %q", checks["signing"])
		}
	}
}
