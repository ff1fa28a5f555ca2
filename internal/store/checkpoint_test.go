package store_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/store"
)

// TestCheckpointsBesideTheWriter: what the writer commits reaches the
// database file from the write-ahead log without the writer checkpointing
// (its own threshold is above what is written first), and under writes
// that never pause the log still starts over at the writer's threshold
// rather than growing.
func TestCheckpointsBesideTheWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ringmaster.db")
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return 0
		}
		return fi.Size()
	}
	if err := s.Exec(ctx, `CREATE TABLE filler (b BLOB)`); err != nil {
		t.Fatal(err)
	}
	before := size(path)
	const fill = `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) INSERT INTO filler SELECT randomblob(4000) FROM n`
	// About 8 MB, below the writer's 40 MB threshold.
	for range 40 {
		if err := s.Exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for size(path) < before+7<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file grew from %d to %d bytes: the log was not checkpointed", before, size(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// 60 MB more without pause: the log stays near the threshold (it
	// would reach 70 MB).
	for range 300 {
		if err := s.Exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	if wal := size(path + "-wal"); wal > 48<<20 {
		t.Fatalf("the log grew to %d bytes", wal)
	}
}
