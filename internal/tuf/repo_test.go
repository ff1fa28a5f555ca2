package tuf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/store"
)

func newRepo(t *testing.T) (*Repo, *FileKeyring) {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	keys, err := OpenKeyring(t.TempDir(), []byte("random secret"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{Store: s, Keys: keys, RootTTL: 365 * 24 * time.Hour, TargetsTTL: 90 * 24 * time.Hour,
		SnapshotTTL: 7 * 24 * time.Hour, TimestampTTL: 24 * time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, keys
}

// TestAcceptRootRefuses: a pushed root must be the next version, signed by
// a threshold of the current root keys and of its own, unexpired, and name
// online keys the server holds; anything else changes nothing.
func TestAcceptRootRefuses(t *testing.T) {
	r, keys := newRepo(t)
	ctx := context.Background()
	cur, _, _ := r.File(ctx, "root.json")
	root, _ := metadata.Root().FromBytes(cur)
	oldRootKey := root.Signed.Roles[Root].KeyIDs[0]
	newKey, err := keys.Generate()
	if err != nil {
		t.Fatal(err)
	}
	newID, _ := newKey.ID()
	draft := func(version int64, expires time.Time, rootKeys bool) *metadata.Metadata[metadata.RootType] {
		b, err := DraftRoot(cur, []*metadata.Key{newKey}, 1, expires)
		if err != nil {
			t.Fatal(err)
		}
		md, _ := metadata.Root().FromBytes(b)
		md.Signed.Version = version
		if !rootKeys {
			md.Signed.Roles[Root].KeyIDs = root.Signed.Roles[Root].KeyIDs
		}
		return md
	}
	sign := func(md *metadata.Metadata[metadata.RootType], ids ...string) []byte {
		for _, id := range ids {
			md.Sign(keys.Signer(id))
		}
		b, _ := md.ToBytes(false)
		return b
	}
	next := root.Signed.Version + 1
	year := time.Now().Add(365 * 24 * time.Hour)
	for _, tc := range []struct {
		name string
		body []byte
		kind fault.Kind
		says string
	}{
		{"not TUF", []byte(`{"signed":{}}`), fault.Invalid, "not TUF root"},
		{"skips a version", sign(draft(next+1, year, true), oldRootKey, newID), fault.Conflict, "must be version"},
		{"replays the current version", sign(draft(next-1, year, true), oldRootKey, newID), fault.Conflict, "must be version"},
		{"expired", sign(draft(next, time.Now().Add(-time.Hour), true), oldRootKey, newID), fault.Invalid, "expired"},
		{"not signed by the current root", sign(draft(next, year, true), newID), fault.Invalid, "current root keys"},
		{"not signed by its own root keys", sign(draft(next, year, true), oldRootKey), fault.Invalid, "its own root keys"},
	} {
		_, err := r.AcceptRoot(ctx, tc.body, "tester", "")
		if fault.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want %s mentioning %q", tc.name, err, tc.kind, tc.says)
		}
	}
	// Online keys the server does not hold.
	foreign, err := GenerateKeyFile(filepath.Join(t.TempDir(), "k"), []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	md := draft(next, year, true)
	for _, id := range md.Signed.Roles[Timestamp].KeyIDs {
		md.Signed.RevokeKey(id, Timestamp)
	}
	md.Signed.AddKey(foreign, Timestamp)
	if _, err := r.AcceptRoot(ctx, sign(md, oldRootKey, newID), "tester", ""); !strings.Contains(fmt.Sprint(err), "does not hold the timestamp keys") {
		t.Errorf("foreign online key: %v", err)
	}
	if after, _, _ := r.File(ctx, "root.json"); string(after) != string(cur) {
		t.Fatal("a refused root changed the served root")
	}
	// The good one goes in, and online metadata is re-signed under it.
	v, err := r.AcceptRoot(ctx, sign(draft(next, year, true), oldRootKey, newID), "tester", "rotate")
	if err != nil || v != next {
		t.Fatalf("AcceptRoot = %d, %v", v, err)
	}
	st, _ := r.Status()
	if st.Roles[Root].Version != next || st.Roles[Root].KeyIDs[0] != newID {
		t.Fatalf("status after rotation: %+v", st.Roles[Root])
	}
}

// TestServedWithoutDatabase: with the database gone, the metadata a device
// needs to verify an offer (the newest of every role, by plain and by
// versioned name, and versions read before) is still served, from memory;
// a version never read fails at once with a clear error instead of
// hanging.
func TestServedWithoutDatabase(t *testing.T) {
	r, _ := newRepo(t)
	ctx := context.Background()
	names := []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"}
	cur := r.cur.Load()
	for _, role := range []string{Root, Snapshot, Targets} {
		names = append(names, fmt.Sprintf("%d.%s.json", cur.versions[role].version, role))
	}
	want := map[string][]byte{}
	for _, n := range names {
		b, _, err := r.File(ctx, n)
		if err != nil {
			t.Fatalf("%s with the database up: %v", n, err)
		}
		want[n] = b
	}
	if err := r.cfg.Store.Close(); err != nil {
		t.Fatal(err)
	}
	r.pending.Store(time.Now().UnixNano()) // a signature this process cannot confirm now
	for _, n := range names {
		b, _, err := r.File(ctx, n)
		if err != nil || string(b) != string(want[n]) {
			t.Fatalf("%s with the database down: %v", n, err)
		}
	}
	// The next root (every client refresh asks for it) is known not to
	// exist without the database.
	next := fmt.Sprintf("%d.root.json", cur.versions[Root].version+1)
	if _, _, err := r.File(ctx, next); !fault.Is(err, fault.NotFound) {
		t.Fatalf("%s with the database down: %v", next, err)
	}
}
