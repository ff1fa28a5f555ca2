// Package content keeps payload bytes in a local content-addressed
// directory: blobs are named by their SHA-256, written once through a
// staging area and renamed into place only after their hash is verified.
package content

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// Store is a content-addressed blob directory with a staging area for
// uploads. Layout: DIR/sha256/ab/abcd… for blobs, DIR/staging/UPDATE/SHA.part
// for uploads in progress. Safe for concurrent use; concurrent uploads of the
// same staging file are the caller's to prevent.
type Store struct {
	dir string
}

// Open returns the store rooted at dir, creating it if needed.
func Open(dir string) (*Store, error) {
	for _, d := range []string{"sha256", "staging"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create content directory: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

func (s *Store) blobPath(sha string) string {
	return filepath.Join(s.dir, "sha256", sha[:2], sha)
}

func (s *Store) stagingPath(updateID, sha string) string {
	return filepath.Join(s.dir, "staging", updateID, sha+".part")
}

// Has reports whether the blob is stored.
func (s *Store) Has(sha string) bool {
	if catalog.ValidateSHA256("sha256", sha) != nil {
		return false
	}
	_, err := os.Stat(s.blobPath(sha))
	return err == nil
}

// Open opens a blob for reading. It returns NotFound if it is not stored and
// Invalid if sha is not a digest (so no path can escape the directory).
func (s *Store) Open(sha string) (*os.File, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fault.E(fault.NotFound, "content %s not found", sha)
	}
	return f, err
}

// UploadOffset returns how many bytes of an upload have been received.
func (s *Store) UploadOffset(updateID, sha string) int64 {
	fi, err := os.Stat(s.stagingPath(updateID, sha))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Append writes r to the staged upload of (updateID, sha) at offset, which
// must equal the bytes received so far (Conflict otherwise; 0 restarts the
// upload). It accepts at most size bytes in all (TooLarge beyond that, with
// nothing kept of the offending request). When the upload is complete it
// checks the SHA-256 of the whole file, computed while streaming: on a
// mismatch the staged bytes are deleted and Invalid is returned. It returns
// the new offset.
func (s *Store) Append(updateID, sha string, offset, size int64, r io.Reader) (got int64, err error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return 0, err
	}
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return 0, err
	}
	path := s.stagingPath(updateID, sha)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, err
	}
	defer func() {
		f.Close()
		if got == 0 { // a refused first chunk leaves nothing behind
			_ = os.Remove(path)
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	have := fi.Size()
	if offset == 0 && have > 0 {
		if err := f.Truncate(0); err != nil {
			return 0, err
		}
		have = 0
	}
	if offset != have {
		return have, fault.E(fault.Conflict, "upload offset is %d, not %d; resume from %d", have, offset, have)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, have)); err != nil {
		return have, err
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, err
	}
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size-have+1))
	if have+n > size {
		_ = f.Truncate(have)
		return have, fault.E(fault.TooLarge, "payload is larger than its declared size of %d bytes", size)
	}
	if err != nil {
		// Keep what arrived intact so the client can resume after it.
		_ = f.Sync()
		return have + n, fault.Wrap(err, fault.Invalid, "upload interrupted")
	}
	if err := f.Sync(); err != nil {
		return have, err
	}
	if have+n < size {
		return have + n, nil
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		_ = os.Remove(path)
		return 0, fault.E(fault.Invalid, "hash mismatch: declared sha256 %s, received bytes hash to %s; the upload was discarded", sha, got)
	}
	return size, nil
}

// StagingDir is where an update's uploads are staged.
func (s *Store) StagingDir(updateID string) string { return filepath.Join(s.dir, "staging", updateID) }

// Discard removes an update's staged uploads.
func (s *Store) Discard(updateID string) error {
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(s.dir, "staging", updateID))
}

// Ingest moves a completely staged upload into the store after verifying its
// size and SHA-256 again. It is idempotent: if the blob is already stored
// the staged copy is removed and nil returned, so a retry after a crash
// between the rename and the caller's commit succeeds. A missing staged file
// with no blob is NotFound; a mismatch is Invalid and deletes the staged file.
func (s *Store) Ingest(updateID, sha string, size int64) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	staged := s.stagingPath(updateID, sha)
	if s.Has(sha) {
		if err := os.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := verifyFile(staged, sha, size); err != nil {
		if !fault.Is(err, fault.NotFound) {
			_ = os.Remove(staged)
		}
		return err
	}
	dst := s.blobPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Rename(staged, dst); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dst))
}

// Put stores data made on the server (a delta) and returns its SHA-256.
// The bytes are written and synced under a temporary name and renamed
// into place, so a crash leaves no partial blob; storing bytes already
// stored changes nothing.
func (s *Store) Put(data []byte) (string, error) {
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if s.Has(sha) {
		return sha, nil
	}
	dst := s.blobPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, "staging"), ".put-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return sha, syncDir(filepath.Dir(dst))
}

// ReadAll reads a whole blob into memory, refusing one larger than max.
func (s *Store) ReadAll(sha string, max int64) ([]byte, error) {
	f, err := s.Open(sha)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fault.E(fault.TooLarge, "content %s is larger than %d bytes", sha, max)
	}
	return b, err
}

func verifyFile(path, sha string, size int64) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fault.E(fault.NotFound, "staged upload of %s is missing", sha)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != size {
		return fault.E(fault.Invalid, "size mismatch: declared %d bytes, staged %d", size, n)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fault.E(fault.Invalid, "hash mismatch: declared sha256 %s, staged bytes hash to %s", sha, got)
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Blob is a stored blob as the garbage collector sees it.
type Blob struct {
	SHA256   string
	Size     int64
	Modified time.Time
}

// Stat returns a stored blob's size and modification time.
func (s *Store) Stat(sha string) (Blob, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return Blob{}, err
	}
	fi, err := os.Stat(s.blobPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return Blob{}, fault.E(fault.NotFound, "content %s not found", sha)
	}
	if err != nil {
		return Blob{}, err
	}
	return Blob{SHA256: sha, Size: fi.Size(), Modified: fi.ModTime()}, nil
}

// Path is a stored blob's file, for a pipeline step to read.
func (s *Store) Path(sha string) (string, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return "", err
	}
	return s.blobPath(sha), nil
}

// Touch marks a blob as just used (a new update claims bytes the store
// already holds), so the garbage collector's grace period covers it.
func (s *Store) Touch(sha string, now time.Time) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	return os.Chtimes(s.blobPath(sha), now, now)
}

// Remove deletes a blob; one already gone is not an error.
func (s *Store) Remove(sha string) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	if err := os.Remove(s.blobPath(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Blobs calls fn with the digest of every stored blob.
func (s *Store) Blobs(fn func(sha string) error) error {
	return filepath.WalkDir(filepath.Join(s.dir, "sha256"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return fn(d.Name())
	})
}

// StagedUpdates returns the update ids that have staged uploads.
func (s *Store) StagedUpdates() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "staging"))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a Put in progress
		}
		ids = append(ids, e.Name())
	}
	return ids, nil
}
