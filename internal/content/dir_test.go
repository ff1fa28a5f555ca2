package content

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// TestDirCorruptStaging: a staged file corrupted after upload fails ingest
// and is removed.
func TestDirCorruptStaging(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenDir(t.TempDir())
	data := []byte("hello world")
	id := catalog.NewID("upd", time.Now())
	good := digest(data)
	if _, err := s.Append(ctx, id, good, 0, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.stagingPath(id, good), []byte("hello WORLD"), 0o600)
	if _, err := s.Ingest(ctx, id, good, int64(len(data))); !fault.Is(err, fault.Invalid) {
		t.Fatalf("ingest of corrupted staging: %v", err)
	}
	if s.Has(ctx, good) {
		t.Fatal("corrupted bytes were stored")
	}
	if _, err := os.Stat(s.stagingPath(id, good)); !os.IsNotExist(err) {
		t.Fatal("corrupted staged file kept")
	}
}
