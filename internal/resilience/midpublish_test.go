package resilience

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/s3test"
)

// TestReplicaDiesMidPublish: the only worker replica is killed (SIGKILL)
// after it copied a payload into the bucket and before it recorded that;
// another worker started later finishes the publish, exactly once: one
// blob in the bucket, nothing left staged, each job completed once.
func TestReplicaDiesMidPublish(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test: skipped with -short")
	}
	ctx := context.Background()
	dsn := dbtest.Postgres(t)
	srv := s3test.Start(t)
	env := append(srv.Env(), "RINGMASTER_DATABASE="+dsn, "RINGMASTER_KEY_PASSPHRASE=one passphrase for every replica",
		"RINGMASTER_JOB_POLL=100ms", "RINGMASTER_JOB_RESCUE_AFTER=2s", "RINGMASTER_INGEST_TIMEOUT=2s")
	api := startProcess(t, "api", t.TempDir(), append(env, "RINGMASTER_ROLE=api"))
	token, err := os.ReadFile(filepath.Join(api.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	admin := api.admin(t, strings.TrimSpace(string(token)))
	doomed := startProcess(t, "worker-1", t.TempDir(), append(env, "RINGMASTER_ROLE=worker", "RINGMASTER_FAILPOINT=ingest-stored"))

	file := filepath.Join(t.TempDir(), "agent.bin")
	if err := os.WriteFile(file, []byte("agent 2.0, ingested twice, stored once"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin.PutProduct(ctx, client.Product{Name: "agent"})
	sum, size, _ := client.HashFile(file)
	u, err := admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "2.0",
		Payloads: []client.NewPayload{{Name: "agent.bin", SHA256: sum, Size: size}}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(file)
	defer f.Close()
	if err := admin.Upload(ctx, u.ID, u.Payloads[0], f, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Publish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, time.Minute, func() bool {
		_, err := os.Stat(filepath.Join(doomed.data, "failpoint-ingest-stored"))
		return err == nil
	})
	doomed.kill(t)
	startProcess(t, "worker-2", t.TempDir(), append(env, "RINGMASTER_ROLE=worker"))
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := admin.WaitPublished(wctx, u.ID, 100*time.Millisecond); err != nil {
		t.Fatalf("after the worker died mid-publish: %v", err)
	}

	var blobs, staged int
	for prefix, n := range map[string]*int{"sha256/": &blobs, "staging/": &staged} {
		out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &srv.Bucket, Prefix: &prefix})
		if err != nil {
			t.Fatal(err)
		}
		*n = len(out.Contents)
	}
	if blobs != 1 || staged != 0 {
		t.Fatalf("bucket: %d blobs and %d staged objects; want 1 and 0", blobs, staged)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for query, want := range map[string]int{
		`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_ingest' AND state = 'completed'`:   1,
		`SELECT COUNT(*) FROM river_job WHERE kind = 'publish_finalize' AND state = 'completed'`: 1,
		`SELECT COUNT(*) FROM river_job WHERE state <> 'completed' AND kind LIKE 'publish_%'`:    0,
		`SELECT COUNT(*) FROM payloads WHERE state = 'stored'`:                                   1,
	} {
		var n int
		if err := conn.QueryRow(ctx, query).Scan(&n); err != nil || n != want {
			t.Errorf("%s = %d (%v), want %d", query, n, err, want)
		}
	}
}
