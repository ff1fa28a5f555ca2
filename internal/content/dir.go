package content

import (
	"context"
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

// Dir is a content-addressed blob directory with a staging area for
// uploads. Layout: DIR/sha256/ab/abcd… for blobs, DIR/staging/UPDATE/SHA.part
// for uploads in progress. Safe for concurrent use; concurrent uploads of the
// same staging file are the caller's to prevent.
type Dir struct {
	dir string
	// BaseURL, when set, answers downloads with a redirect to
	// BaseURL/KEY: a CDN or web server in front of the directory.
	BaseURL string
}

var _ Store = (*Dir)(nil)

// OpenDir returns the store rooted at dir, creating it if needed.
func OpenDir(dir string) (*Dir, error) {
	for _, d := range []string{"sha256", "staging"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create content directory: %w", err)
		}
	}
	return &Dir{dir: dir}, nil
}

func (s *Dir) blobPath(sha string) string {
	return filepath.Join(s.dir, filepath.FromSlash(Key(sha)))
}

func (s *Dir) stagingPath(updateID, sha string) string {
	return filepath.Join(s.dir, "staging", updateID, sha+".part")
}

// Has reports whether the blob is stored.
func (s *Dir) Has(_ context.Context, sha string) bool {
	if catalog.ValidateSHA256("sha256", sha) != nil {
		return false
	}
	_, err := os.Stat(s.blobPath(sha))
	return err == nil
}

// Open implements Store; no path can escape the directory, since sha must
// be a digest.
func (s *Dir) Open(_ context.Context, sha string) (Reader, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(sha))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fault.E(fault.NotFound, "content %s not found", sha)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// UploadOffset implements Store.
func (s *Dir) UploadOffset(_ context.Context, updateID, sha string) (int64, error) {
	fi, err := os.Stat(s.stagingPath(updateID, sha))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Append implements Store: the bytes of an interrupted body are kept.
func (s *Dir) Append(_ context.Context, updateID, sha string, offset, size int64, r io.Reader) (got int64, err error) {
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

// Discard implements Store.
func (s *Dir) Discard(_ context.Context, updateID string) error {
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return err
	}
	return os.RemoveAll(filepath.Join(s.dir, "staging", updateID))
}

// Ingest implements Store; the rename comes last, so a retry after a crash
// between it and the caller's commit succeeds.
func (s *Dir) Ingest(ctx context.Context, updateID, sha string, size int64) (catalog.Digests, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return catalog.Digests{}, err
	}
	staged := s.stagingPath(updateID, sha)
	if s.Has(ctx, sha) {
		if err := os.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return catalog.Digests{}, err
		}
		_ = os.Remove(filepath.Dir(staged))
		return verifyFile(s.blobPath(sha), "stored", sha, size)
	}
	d, err := verifyFile(staged, "staged", sha, size)
	if err != nil {
		if !fault.Is(err, fault.NotFound) {
			_ = os.Remove(staged)
		}
		return d, err
	}
	dst := s.blobPath(sha)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return d, err
	}
	if err := os.Rename(staged, dst); err != nil {
		return d, err
	}
	_ = os.Remove(filepath.Dir(staged)) // the update's last upload: nothing staged is left
	return d, syncDir(filepath.Dir(dst))
}

// Put implements Store: the bytes are written and synced under a
// temporary name and renamed into place, so a crash leaves no partial blob.
func (s *Dir) Put(ctx context.Context, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if s.Has(ctx, sha) {
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

// verifyFile checks a file's size and SHA-256 (what names it in errors:
// "staged", "stored") and returns its other digests.
func verifyFile(path, what, sha string, size int64) (catalog.Digests, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return catalog.Digests{}, fault.E(fault.NotFound, "%s upload of %s is missing", what, sha)
	}
	if err != nil {
		return catalog.Digests{}, err
	}
	defer f.Close()
	d, err := check(f, what, sha, size)
	if err != nil {
		return d, err
	}
	return d, f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Stat implements Store.
func (s *Dir) Stat(_ context.Context, sha string) (Blob, error) {
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

// LocalFile implements Store: the blob's own file.
func (s *Dir) LocalFile(_ context.Context, sha string) (string, func(), error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return "", nil, err
	}
	return s.blobPath(sha), func() {}, nil
}

// DownloadURL implements Store: BaseURL's, if set.
func (s *Dir) DownloadURL(_ context.Context, sha string) (string, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil || s.BaseURL == "" {
		return "", err
	}
	return strings.TrimSuffix(s.BaseURL, "/") + "/" + Key(sha), nil
}

// Touch implements Store.
func (s *Dir) Touch(_ context.Context, sha string, now time.Time) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	return os.Chtimes(s.blobPath(sha), now, now)
}

// Remove implements Store.
func (s *Dir) Remove(_ context.Context, sha string) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	if err := os.Remove(s.blobPath(sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Blobs implements Store.
func (s *Dir) Blobs(_ context.Context, fn func(sha string) error) error {
	return filepath.WalkDir(filepath.Join(s.dir, "sha256"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return fn(d.Name())
	})
}

// Staged implements Store: an update's staging directory changes with
// every write into it.
func (s *Dir) Staged(context.Context) ([]Staged, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "staging"))
	if err != nil {
		return nil, err
	}
	var staged []Staged
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // a Put in progress
		}
		fi, err := e.Info()
		if err != nil {
			continue // discarded meanwhile
		}
		staged = append(staged, Staged{UpdateID: e.Name(), Modified: fi.ModTime()})
	}
	return staged, nil
}
