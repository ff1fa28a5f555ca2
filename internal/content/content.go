// Package content keeps payload bytes, content-addressed by SHA-256: in a
// local directory (Dir) or in S3-compatible object storage (S3), so that
// any number of replicas share one store. Blobs are written once through
// a staging area and become visible under their digest only after their
// hash is verified.
package content

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
)

// Store is where payload bytes live. Uploads are staged per update and
// digest; Append resumes at the offset the store reports, whichever
// replica received the earlier bytes (for S3). Safe for concurrent use;
// concurrent appends to the same staged upload are the caller's to
// prevent.
type Store interface {
	// Has reports whether the blob is stored.
	Has(ctx context.Context, sha string) bool
	// Open opens a blob for reading; NotFound if it is not stored and
	// Invalid if sha is not a digest.
	Open(ctx context.Context, sha string) (Reader, error)
	// Stat returns a stored blob's size and last use.
	Stat(ctx context.Context, sha string) (Blob, error)
	// UploadOffset returns how many bytes of an upload are kept.
	UploadOffset(ctx context.Context, updateID, sha string) (int64, error)
	// Append writes r to the staged upload at offset, which must equal
	// the bytes kept so far (Conflict otherwise; 0 restarts the upload).
	// It accepts at most size bytes in all (TooLarge beyond that, with
	// nothing kept of the offending request). When the upload is
	// complete it checks the SHA-256 of the whole file: on a mismatch
	// the staged bytes are deleted and Invalid is returned. It returns
	// the new offset; after an interrupted body, what was kept of it.
	Append(ctx context.Context, updateID, sha string, offset, size int64, r io.Reader) (int64, error)
	// Ingest moves a complete staged upload into the store after
	// verifying its size and SHA-256 again, and returns its other
	// digests. It is idempotent: if the blob is already stored the staged
	// copy is removed and the blob's digests returned. A missing staged
	// upload with no blob is NotFound; a mismatch is Invalid and deletes
	// the staged copy.
	Ingest(ctx context.Context, updateID, sha string, size int64) (catalog.Digests, error)
	// Discard removes an update's staged uploads.
	Discard(ctx context.Context, updateID string) error
	// Staged lists the updates with staged uploads and when each was
	// last written.
	Staged(ctx context.Context) ([]Staged, error)
	// Put stores bytes made on the server (a delta) and returns their
	// SHA-256; storing bytes already stored changes nothing.
	Put(ctx context.Context, data []byte) (string, error)
	// LocalFile gives a blob as a file on this machine (for a pipeline
	// step's command); done releases it.
	LocalFile(ctx context.Context, sha string) (path string, done func(), err error)
	// Touch marks a blob as just used, so the garbage collector's grace
	// period covers a new claim on it.
	Touch(ctx context.Context, sha string, now time.Time) error
	// Remove deletes a blob; one already gone is not an error.
	Remove(ctx context.Context, sha string) error
	// Blobs calls fn with the digest of every stored blob.
	Blobs(ctx context.Context, fn func(sha string) error) error
	// DownloadURL is where a client may fetch the blob instead of from
	// this server (a presigned or CDN URL), or "" to serve it here.
	DownloadURL(ctx context.Context, sha string) (string, error)
}

// Reader is an open blob: seekable, so downloads take ranges.
type Reader interface {
	io.ReadSeekCloser
}

// Blob is a stored blob as the garbage collector sees it.
type Blob struct {
	SHA256   string
	Size     int64
	Modified time.Time
}

// Staged is an update with uploads in the staging area.
type Staged struct {
	UpdateID string
	Modified time.Time
}

// Key is a blob's name in the store: sha256/ab/abcd…, the same under a
// local directory, in a bucket, and under a CDN base URL.
func Key(sha string) string { return "sha256/" + sha[:2] + "/" + sha }

// check reads r to its end and checks that it is size bytes hashing to
// sha (SHA-256), returning its other digests; a mismatch is Invalid,
// naming what (a "staged" upload, a stored blob).
func check(r io.Reader, what, sha string, size int64) (catalog.Digests, error) {
	h256, h1, h5 := sha256.New(), sha1.New(), md5.New()
	n, err := io.Copy(io.MultiWriter(h256, h1, h5), r)
	if err != nil {
		return catalog.Digests{}, err
	}
	if n != size {
		return catalog.Digests{}, fault.E(fault.Invalid, "size mismatch: declared %d bytes, %s %d", size, what, n)
	}
	if got := hex.EncodeToString(h256.Sum(nil)); got != sha {
		return catalog.Digests{}, fault.E(fault.Invalid, "hash mismatch: declared sha256 %s, %s bytes hash to %s", sha, what, got)
	}
	return catalog.Digests{SHA1: hex.EncodeToString(h1.Sum(nil)), MD5: hex.EncodeToString(h5.Sum(nil))}, nil
}

// ReadAll reads a whole blob into memory, refusing one larger than max.
func ReadAll(ctx context.Context, s Store, sha string, max int64) ([]byte, error) {
	f, err := s.Open(ctx, sha)
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

// Serve answers a download of a blob: a redirect where the store gives a
// download URL (integrity comes from the signed metadata, not from who
// serves the bytes), else the bytes with ranges. Content-addressed bytes
// never change under their name, so they are cacheable for good.
func Serve(w http.ResponseWriter, r *http.Request, s Store, sha string) {
	url, err := s.DownloadURL(r.Context(), sha)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if url != "" {
		// A presigned URL expires: the redirect itself must not be cached.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, url, http.StatusFound)
		return
	}
	f, err := s.Open(r.Context(), sha)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", `"`+sha+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, f)
}
