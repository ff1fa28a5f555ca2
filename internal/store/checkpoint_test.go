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
	// A 10 MB threshold, that the test writes past it in seconds.
	const threshold = 10 << 20
	defer store.SetWriterCheckpointPages(threshold / 4096)()
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
	const fillBytes = 50 * 4000
	// A fifth of the threshold: the writer does not checkpoint it.
	for range threshold / 5 / fillBytes {
		if err := s.Exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for size(path) < before+threshold/5*7/8 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file grew from %d to %d bytes: the log was not checkpointed", before, size(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// One and a half times the threshold more, without pause: the log
	// stays near the threshold (it would reach 1.7 times it).
	for range threshold * 3 / 2 / fillBytes {
		if err := s.Exec(ctx, fill); err != nil {
			t.Fatal(err)
		}
	}
	if wal := size(path + "-wal"); wal > threshold*6/5 {
		t.Fatalf("the log grew to %d bytes, past the writer's threshold of %d", wal, threshold)
	}
}
