package app_test

import (
	"bufio"
	"context"
	"database/sql"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/dbtest"
)

// child is a ringmaster server in another process (this test binary, see
// TestMain), so it can be killed with SIGKILL.
type child struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

var servingRE = regexp.MustCompile(`msg="ringmaster serving" addr=(\S+)`)

func startChild(t *testing.T, data, dsn string, env ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "--data", data, "--listen", "127.0.0.1:0"}
	if dsn != "" {
		args = append(args, "--database", dsn)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), append([]string{"RINGMASTER_TEST_CHILD=serve",
		"RINGMASTER_JOB_RESCUE_AFTER=2s", "RINGMASTER_INGEST_TIMEOUT=2s", "RINGMASTER_JOB_POLL=100ms"}, env...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			t.Log("child:", line)
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		cmd.Wait()
		close(c.done)
	}()
	select {
	case c.url = <-addr:
	case <-c.done:
		t.Fatal("server child exited before serving")
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server child did not start")
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
}

func (c *child) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("server child did not shut down on SIGTERM")
	}
}

// TestKillDuringPublish kills the server with SIGKILL in the middle of the
// publishing pipeline; after a restart the publish completes exactly once,
// with no orphaned or duplicated rows or blobs.
func TestKillDuringPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	cases := []struct{ backend, failpoint string }{
		{"sqlite", "ingest-stored"}, // blob moved into the store, not committed
		{"sqlite", "finalize"},      // payload committed, update not yet published
		{"postgres", "ingest-stored"},
	}
	for _, tc := range cases {
		t.Run(tc.backend+"/"+tc.failpoint, func(t *testing.T) {
			t.Parallel()
			data, dsn := t.TempDir(), childDatabase(t, tc.backend)
			ctx := context.Background()
			c := startChild(t, data, dsn, "RINGMASTER_FAILPOINT="+tc.failpoint)
			admin := adminClient(t, c.url, data)
			path, sum := writeRandomFile(t, 3<<20)
			u, err := admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "2.0",
				Payloads: []client.NewPayload{{Name: "agent.bin", SHA256: sum, Size: 3 << 20}}})
			if !client.IsKind(err, "not-found") {
				t.Fatalf("create update before product: %v", err)
			}
			admin.PutProduct(ctx, client.Product{Name: "agent"})
			u, err = admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "2.0",
				Payloads: []client.NewPayload{{Name: "agent.bin", SHA256: sum, Size: 3 << 20}}})
			if err != nil {
				t.Fatal(err)
			}
			f, _ := os.Open(path)
			defer f.Close()
			if err := admin.Upload(ctx, u.ID, u.Payloads[0], f, client.UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Publish(ctx, u.ID); err != nil {
				t.Fatal(err)
			}
			waitFile(t, filepath.Join(data, "failpoint-"+tc.failpoint))
			c.kill9(t)
			os.Remove(filepath.Join(data, "failpoint-"+tc.failpoint))

			c = startChild(t, data, dsn)
			admin = adminClient(t, c.url, data)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			pub, err := admin.WaitPublished(wctx, u.ID, 100*time.Millisecond)
			if err != nil {
				t.Fatalf("after restart: %v", err)
			}
			// Digests come from the bytes, whichever attempt stored them.
			if s1, m5 := legacyDigests(t, path); pub.Payloads[0].State != "stored" || pub.Payloads[0].SHA1 != s1 || pub.Payloads[0].MD5 != m5 {
				t.Fatalf("payload %+v", pub.Payloads[0])
			}
			// Published once: the device plane sees it after a deploy.
			if _, err := admin.Deploy(ctx, "agent", "2.0"); err != nil {
				t.Fatal(err)
			}
			dev, _ := client.New(c.url, "")
			resp, err := dev.CheckIn(ctx, client.CheckInRequest{DeviceID: "d1", Installed: []client.Installed{{Product: "agent", Version: "1"}}})
			if err != nil || len(resp.Offers) != 1 {
				t.Fatalf("check-in after recovery: %+v, %v", resp, err)
			}
			c.stop(t)

			if blobs, staged := countBlobs(t, data); blobs != 1 || staged != 0 {
				t.Fatalf("content store: %d blobs, %d staged files; want 1 and 0", blobs, staged)
			}
			db := openDB(t, data, dsn)
			for query, want := range map[string]int{
				`SELECT COUNT(*) FROM updates`:  1,
				`SELECT COUNT(*) FROM payloads`: 1,
				`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_ingest' AND state = 'completed'`:   1,
				`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_finalize' AND state = 'completed'`: 1,
				`SELECT COUNT(*) FROM river_job WHERE state <> 'completed' AND kind LIKE 'publish_%'`:    0,
				// Publishing and the deployment each changed the catalog exactly once.
				`SELECT generation FROM catalog_generation`: 2,
			} {
				var n int
				if err := db.QueryRow(query).Scan(&n); err != nil || n != want {
					t.Errorf("%s = %d (%v), want %d", query, n, err, want)
				}
			}
		})
	}
}

// childDatabase is the --database of a child server on backend: a fresh
// PostgreSQL database, or "" for SQLite in its data directory.
func childDatabase(t *testing.T, backend string) string {
	if backend == "postgres" {
		return dbtest.Postgres(t)
	}
	return ""
}

func adminClient(t *testing.T, url, data string) *client.Client {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(url, strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openDB(t *testing.T, data, dsn string) *sql.DB {
	t.Helper()
	driver := "pgx"
	if dsn == "" {
		driver, dsn = "sqlite", filepath.Join(data, "ringmaster.db")
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestKillDuringDelta kills the server after a delta's blob is written and
// before it is recorded; after a restart the delta job runs again and the
// delta is recorded, signed and stored exactly once, on both databases.
func TestKillDuringDelta(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			data, dsn := t.TempDir(), childDatabase(t, backend)
			ctx := context.Background()
			c := startChild(t, data, dsn, "RINGMASTER_FAILPOINT=delta-stored")
			admin := adminClient(t, c.url, data)
			v1, _ := writeRandomFile(t, 2<<20)
			b, _ := os.ReadFile(v1)
			b = append(append([]byte("release 1.1 header"), b[:1<<20]...), b[1<<20+4096:]...)
			v2 := filepath.Join(t.TempDir(), "payload.bin")
			if err := os.WriteFile(v2, b, 0o600); err != nil {
				t.Fatal(err)
			}
			opts := client.PublishOptions{Poll: 50 * time.Millisecond}
			if _, err := admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0"}, []string{v1}, opts); err != nil {
				t.Fatal(err)
			}
			u, err := admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.1"}, []string{v2}, opts)
			if err != nil {
				t.Fatal(err)
			}
			waitFile(t, filepath.Join(data, "failpoint-delta-stored"))
			c.kill9(t)
			os.Remove(filepath.Join(data, "failpoint-delta-stored"))

			c = startChild(t, data, dsn)
			admin = adminClient(t, c.url, data)
			var ds []client.Delta
			deadline := time.Now().Add(2 * time.Minute)
			for len(ds) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the delta was not made after the restart")
				}
				time.Sleep(100 * time.Millisecond)
				if ds, err = admin.UpdateDeltas(ctx, u.ID); err != nil {
					t.Fatal(err)
				}
			}
			if len(ds) != 1 || ds[0].State != "ready" || ds[0].Size == 0 || ds[0].Size > 64<<10 {
				t.Fatalf("deltas after recovery: %+v", ds)
			}
			c.stop(t)

			if blobs, staged := countBlobs(t, data); blobs != 3 || staged != 0 {
				t.Fatalf("content store: %d blobs, %d staged files; want 3 (two payloads, one delta) and 0", blobs, staged)
			}
			db := openDB(t, data, dsn)
			for query, want := range map[string]int{
				`SELECT COUNT(*) FROM deltas`: 1,
				`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_delta' AND state = 'completed'`: 1,
				`SELECT COUNT(*) FROM river_job WHERE state <> 'completed' AND kind LIKE 'publish_%'`: 0,
				`SELECT COUNT(*) FROM audit_log WHERE action = 'update.deltas'`:                       1,
			} {
				var n int
				if err := db.QueryRow(query).Scan(&n); err != nil || n != want {
					t.Errorf("%s = %d (%v), want %d", query, n, err, want)
				}
			}
		})
	}
}

// TestKillDuringGC kills the server after the garbage collector removed
// its first unreferenced blob; after a restart a collection removes the
// rest, and every referenced blob is intact.
func TestKillDuringGC(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	data := t.TempDir()
	ctx := context.Background()
	c := startChild(t, data, "", "RINGMASTER_FAILPOINT=gc-removed")
	admin := adminClient(t, c.url, data)
	opts := client.PublishOptions{Poll: 50 * time.Millisecond}
	var keep []string
	for _, product := range []string{"agent", "scratch-a", "scratch-b"} {
		p, _ := writeRandomFile(t, 16<<10)
		u, err := admin.PublishFiles(ctx, client.NewUpdate{Product: product, Version: "1.0"}, []string{p}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if product == "agent" {
			keep = append(keep, u.Payloads[0].SHA256)
			continue
		}
		if err := admin.DeleteUpdate(ctx, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour) // past the default 24 h grace
	filepath.WalkDir(filepath.Join(data, "content", "sha256"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			err = os.Chtimes(p, old, old)
		}
		return err
	})
	go admin.CollectGarbage(ctx, false) // stopped at the failpoint, then killed
	waitFile(t, filepath.Join(data, "failpoint-gc-removed"))
	c.kill9(t)
	os.Remove(filepath.Join(data, "failpoint-gc-removed"))
	if blobs, _ := countBlobs(t, data); blobs != 2 {
		t.Fatalf("%d blobs after the kill; want 2 (the kept payload and one of the two unreferenced)", blobs)
	}

	c = startChild(t, data, "")
	admin = adminClient(t, c.url, data)
	rep, err := admin.CollectGarbage(ctx, false)
	if err != nil || len(rep.Removed) != 1 || rep.Referenced != 1 {
		t.Fatalf("collection after the restart: %+v, %v", rep, err)
	}
	c.stop(t)
	if blobs, staged := countBlobs(t, data); blobs != 1 || staged != 0 {
		t.Fatalf("content store: %d blobs, %d staged files; want 1 and 0", blobs, staged)
	}
	if _, err := os.Stat(filepath.Join(data, "content", "sha256", keep[0][:2], keep[0])); err != nil {
		t.Fatalf("the referenced payload: %v", err)
	}
}

// TestKillDuringStep kills the server after an added pipeline step ran
// and before its verdict was recorded; after a restart the step runs again
// and its verdict is recorded once, and the update publishes.
func TestKillDuringStep(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	t.Parallel()
	data, dir := t.TempDir(), t.TempDir()
	ctx := context.Background()
	runs := filepath.Join(dir, "runs")
	cfg := filepath.Join(dir, "ringmaster.yaml")
	if err := os.WriteFile(cfg, []byte("pipeline_steps:\n  - name: count\n    command: [sh, -c, 'echo \"$1\" >> "+runs+"', count]\n    timeout: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, data, "", "RINGMASTER_FAILPOINT=step-ran", "RINGMASTER_CONFIG="+cfg)
	admin := adminClient(t, c.url, data)
	p, sum := writeRandomFile(t, 16<<10)
	if _, err := admin.PutProduct(ctx, client.Product{Name: "agent"}); err != nil {
		t.Fatal(err)
	}
	u, err := admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "1.0", Payloads: []client.NewPayload{{Name: "payload.bin", SHA256: sum, Size: 16 << 10}}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(p)
	defer f.Close()
	if err := admin.Upload(ctx, u.ID, u.Payloads[0], f, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Publish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(data, "failpoint-step-ran"))
	c.kill9(t)
	os.Remove(filepath.Join(data, "failpoint-step-ran"))

	c = startChild(t, data, "", "RINGMASTER_CONFIG="+cfg)
	admin = adminClient(t, c.url, data)
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	pub, err := admin.WaitPublished(wctx, u.ID, 100*time.Millisecond)
	if err != nil || len(pub.Checks) != 1 || pub.Checks[0].Verdict != "pass" {
		t.Fatalf("after restart: %+v, %v", pub, err)
	}
	c.stop(t)
	b, _ := os.ReadFile(runs)
	if lines := strings.Count(string(b), "\n"); lines != 2 || !strings.Contains(string(b), filepath.Join("content", "sha256")) {
		t.Fatalf("the step ran %d times (once before the kill, once after), given %q", lines, b)
	}
	db := openDB(t, data, "")
	for query, want := range map[string]int{
		`SELECT COUNT(*) FROM update_checks`:                                                 1,
		`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_step' AND state = 'completed'`: 1,
		`SELECT COUNT(*) FROM audit_log WHERE action = 'update.check'`:                       1,
	} {
		var n int
		if err := db.QueryRow(query).Scan(&n); err != nil || n != want {
			t.Errorf("%s = %d (%v), want %d", query, n, err, want)
		}
	}
}
