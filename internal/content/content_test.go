package content

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestResumableUploadAndIngest(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("ringmaster"), 1000)
	sha, size := digest(data), int64(len(data))
	id := catalog.NewID("upd", time.Now())

	off, err := s.Append(id, sha, 0, size, bytes.NewReader(data[:3000]))
	if err != nil || off != 3000 {
		t.Fatalf("first chunk: %d, %v", off, err)
	}
	if got := s.UploadOffset(id, sha); got != 3000 {
		t.Fatalf("UploadOffset = %d", got)
	}
	// A chunk at the wrong offset is refused and changes nothing.
	if _, err := s.Append(id, sha, 2000, size, bytes.NewReader(data[2000:])); !fault.Is(err, fault.Conflict) {
		t.Fatalf("wrong offset: %v", err)
	}
	// An interrupted chunk keeps what arrived.
	off, err = s.Append(id, sha, 3000, size, io.MultiReader(bytes.NewReader(data[3000:5000]), errReader{}))
	if err == nil || off != 5000 {
		t.Fatalf("interrupted chunk: %d, %v", off, err)
	}
	off, err = s.Append(id, sha, 5000, size, bytes.NewReader(data[5000:]))
	if err != nil || off != size {
		t.Fatalf("last chunk: %d, %v", off, err)
	}
	if s.Has(sha) {
		t.Fatal("blob visible before ingest")
	}
	if err := s.Ingest(id, sha, size); err != nil {
		t.Fatal(err)
	}
	if err := s.Ingest(id, sha, size); err != nil {
		t.Fatalf("second ingest (after a crash before commit): %v", err)
	}
	f, err := s.Open(sha)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("stored bytes differ")
	}
	var blobs []string
	s.Blobs(func(sha string) error { blobs = append(blobs, sha); return nil })
	if len(blobs) != 1 || blobs[0] != sha {
		t.Fatalf("blobs = %v", blobs)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestAppendRejects(t *testing.T) {
	s, _ := Open(t.TempDir())
	data := []byte("hello world")
	id := catalog.NewID("upd", time.Now())
	// Too many bytes: refused, nothing kept.
	if _, err := s.Append(id, digest(data), 0, 5, bytes.NewReader(data)); !fault.Is(err, fault.TooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if s.UploadOffset(id, digest(data)) != 0 {
		t.Fatal("oversized upload left bytes behind")
	}
	// Wrong content: refused, nothing kept.
	wrong := digest([]byte("something else"))
	if _, err := s.Append(id, wrong, 0, int64(len(data)), bytes.NewReader(data)); !fault.Is(err, fault.Invalid) {
		t.Fatalf("hash mismatch: %v", err)
	}
	if _, err := os.Stat(s.stagingPath(id, wrong)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("mismatched upload left a staged file")
	}
	// Path tricks never reach the file system.
	for _, bad := range []string{"../../etc/passwd", "AA" + digest(data)[2:], ""} {
		if _, err := s.Open(bad); !fault.Is(err, fault.Invalid) {
			t.Errorf("Open(%q) = %v, want Invalid", bad, err)
		}
		if _, err := s.Append(id, bad, 0, 1, bytes.NewReader(nil)); !fault.Is(err, fault.Invalid) {
			t.Errorf("Append(%q) = %v, want Invalid", bad, err)
		}
	}
	if _, err := s.Append("../x", digest(data), 0, 1, bytes.NewReader(nil)); !fault.Is(err, fault.Invalid) {
		t.Errorf("Append with a bad update id = %v", err)
	}
	if _, err := s.Open(digest(data)); !fault.Is(err, fault.NotFound) {
		t.Errorf("Open of a missing blob = %v", err)
	}
	// A staged file corrupted after upload fails ingest and is removed.
	good := digest(data)
	if _, err := s.Append(id, good, 0, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(s.stagingPath(id, good), []byte("hello WORLD"), 0o600)
	if err := s.Ingest(id, good, int64(len(data))); !fault.Is(err, fault.Invalid) {
		t.Fatalf("ingest of corrupted staging: %v", err)
	}
	if s.Has(good) {
		t.Fatal("corrupted bytes were stored")
	}
}
