package lifecycle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// age makes every stored blob two hours old (the test's grace is one
// minute), as if they had been written long ago.
func age(t *testing.T, s *apptest.Server) {
	t.Helper()
	old := time.Now().Add(-2 * time.Hour)
	filepath.WalkDir(filepath.Join(s.Data, "content", "sha256"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			err = os.Chtimes(p, old, old)
		}
		return err
	})
}

func blobExists(s *apptest.Server, sha string) bool {
	_, err := os.Stat(filepath.Join(s.Data, "content", "sha256", sha[:2], sha))
	return err == nil
}

// TestContentGC: the collector removes exactly the blobs nothing
// references (a deleted update's payload) and keeps payloads of live
// updates, deltas, a blob younger than the grace period and an upload in
// flight, which completes afterwards; a dry run removes nothing; an empty
// product can be deleted, one with updates cannot.
func TestContentGC(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", func(c *config.Config) { c.ContentGC.Grace = time.Minute })
	opts := client.PublishOptions{Poll: 50 * time.Millisecond}
	base := make([]byte, 256<<10)
	for i := range base {
		base[i] = byte(i * 7 % 251)
	}
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "app.bin")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keep, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "app", Version: "1.0"}, []string{write(base)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	next := append(bytes.Clone(base[:1000]), base...)
	u11, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "app", Version: "1.1"}, []string{write(next)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	var deltas []client.Delta
	apptest.WaitFor(t, 30*time.Second, func() bool {
		deltas, err = s.Admin.UpdateDeltas(ctx, u11.ID)
		return err == nil && len(deltas) == 1
	})
	gone, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "scratch", Version: "0.1"}, []string{randomFile(t, 8192)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Admin.DeleteUpdate(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	// An upload in flight: declared, half sent.
	flight := randomFile(t, 64<<10)
	fb, _ := os.ReadFile(flight)
	sum := sha256.Sum256(fb)
	inFlight, err := s.Admin.CreateUpdate(ctx, client.NewUpdate{Product: "app", Version: "1.2",
		Payloads: []client.NewPayload{{Name: "app.bin", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(fb))}}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/updates/"+inFlight.ID+"/payloads/"+inFlight.Payloads[0].SHA256, bytes.NewReader(fb[:len(fb)/2]))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(fb)/2-1, len(fb)))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode >= 300 {
		t.Fatalf("half an upload: %v %v", res.Status, err)
	}
	age(t, s)
	young, err := s.Content.Put(ctx, []byte("written a moment ago by a job that has not committed yet"))
	if err != nil {
		t.Fatal(err)
	}

	dry, err := s.Admin.CollectGarbage(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || len(dry.Removed) != 1 || dry.Removed[0].SHA256 != gone.Payloads[0].SHA256 || dry.Young != 1 || dry.Referenced != 3 ||
		!blobExists(s, gone.Payloads[0].SHA256) {
		t.Fatalf("dry run: %+v", dry)
	}
	rep, err := s.Admin.CollectGarbage(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 1 || rep.Removed[0].SHA256 != gone.Payloads[0].SHA256 || rep.FreedBytes != 8192 || blobExists(s, gone.Payloads[0].SHA256) {
		t.Fatalf("collection: %+v", rep)
	}
	for _, sha := range []string{keep.Payloads[0].SHA256, u11.Payloads[0].SHA256, deltas[0].SHA256, young} {
		if !blobExists(s, sha) {
			t.Fatalf("blob %s, still referenced or young, was removed", sha)
		}
	}
	// The upload in flight resumes and publishes.
	f, _ := os.Open(flight)
	defer f.Close()
	if err := s.Admin.Upload(ctx, inFlight.ID, inFlight.Payloads[0], f, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Publish(ctx, inFlight.ID); err != nil {
		t.Fatal(err)
	}
	if u, err := s.Admin.WaitPublished(ctx, inFlight.ID, 50*time.Millisecond); err != nil || u.State != "published" {
		t.Fatalf("the upload in flight after the collection: %+v, %v", u, err)
	}
	if es, _ := s.Admin.Audit(ctx, client.AuditFilter{Action: "content.gc"}); len(es) != 1 {
		t.Fatalf("content.gc audit entries: %+v", es)
	}
	// The emptied product can go; one with updates cannot.
	if err := s.Admin.DeleteProduct(ctx, "app"); !client.IsKind(err, "conflict") {
		t.Fatalf("deleting a product with updates: %v", err)
	}
	if err := s.Admin.DeleteProduct(ctx, "scratch"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Product(ctx, "scratch"); !client.IsKind(err, "not-found") {
		t.Fatalf("the deleted product: %v", err)
	}
}
