package content

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/s3test"
)

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// testStore is one store under test, with a way to open a second handle
// on the same storage (another replica).
type testStore struct {
	name    string
	s       Store
	replica func() Store
}

// partSize is the S3 part size in tests: S3's minimum, so uploads of a
// few parts stay small.
const partSize = 5 << 20

// stores returns both kinds of store: every test here holds for each.
func stores(t *testing.T) []testStore {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := s3test.Start(t)
	srv.SetEnv(t)
	open := func() Store {
		s, err := OpenS3(context.Background(), S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, Prefix: "rm", TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		s.PartSize, s.CopyLimit = partSize, partSize
		return s
	}
	return []testStore{
		{name: "dir", s: d, replica: func() Store { r, _ := OpenDir(dir); return r }},
		{name: "s3", s: open(), replica: open},
	}
}

// payload is 2.5 parts of varied bytes.
func payload() []byte {
	b := make([]byte, 2*partSize+partSize/2)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestResumableUploadAndIngest(t *testing.T) {
	ctx := context.Background()
	for _, ts := range stores(t) {
		t.Run(ts.name, func(t *testing.T) {
			s := ts.s
			data := payload()
			sha, size := digest(data), int64(len(data))
			id := catalog.NewID("upd", time.Now())
			offset := func(s Store) int64 {
				t.Helper()
				n, err := s.UploadOffset(ctx, id, sha)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}

			off, err := s.Append(ctx, id, sha, 0, size, bytes.NewReader(data[:3000]))
			if err != nil || off != 3000 || offset(s) != 3000 {
				t.Fatalf("first chunk: %d, %v; offset %d", off, err, offset(s))
			}
			// A chunk at the wrong offset is refused and changes nothing.
			if _, err := s.Append(ctx, id, sha, 2000, size, bytes.NewReader(data[2000:])); !fault.Is(err, fault.Conflict) {
				t.Fatalf("wrong offset: %v", err)
			}
			// An interrupted chunk keeps what arrived, across a part
			// boundary.
			cut := int64(partSize + 5000)
			off, err = s.Append(ctx, id, sha, 3000, size, io.MultiReader(bytes.NewReader(data[3000:cut]), errReader{}))
			if err == nil || off != cut {
				t.Fatalf("interrupted chunk: %d, %v", off, err)
			}
			// Another replica sees the same upload and finishes it.
			other := ts.replica()
			if got := offset(other); got != cut {
				t.Fatalf("the other replica's offset = %d, want %d", got, cut)
			}
			off, err = other.Append(ctx, id, sha, cut, size, bytes.NewReader(data[cut:]))
			if err != nil || off != size {
				t.Fatalf("last chunk: %d, %v", off, err)
			}
			if offset(s) != size {
				t.Fatalf("offset after the last chunk = %d", offset(s))
			}
			if s.Has(ctx, sha) {
				t.Fatal("blob visible before ingest")
			}
			want := catalog.Digests{SHA1: fmt.Sprintf("%x", sha1.Sum(data)), MD5: fmt.Sprintf("%x", md5.Sum(data))}
			if d, err := s.Ingest(ctx, id, sha, size); err != nil || d != want {
				t.Fatalf("ingest: %+v, %v; want %+v", d, err, want)
			}
			// A second ingest (after a crash before the commit) finds the
			// blob stored and reads its digests from it.
			if d, err := s.Ingest(ctx, id, sha, size); err != nil || d != want {
				t.Fatalf("second ingest: %+v, %v", d, err)
			}
			if !other.Has(ctx, sha) {
				t.Fatal("the other replica does not see the blob")
			}
			got, err := ReadAll(ctx, other, sha, size)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("stored bytes differ (%v)", err)
			}
			// Ranges read only their bytes.
			f, err := s.Open(ctx, sha)
			if err != nil {
				t.Fatal(err)
			}
			if end, _ := f.Seek(0, io.SeekEnd); end != size {
				t.Fatalf("size by seek = %d", end)
			}
			f.Seek(partSize-10, io.SeekStart)
			part := make([]byte, 20)
			if _, err := io.ReadFull(f, part); err != nil || !bytes.Equal(part, data[partSize-10:partSize+10]) {
				t.Fatalf("ranged read: %v", err)
			}
			f.Close()
			var blobs []string
			s.Blobs(ctx, func(sha string) error { blobs = append(blobs, sha); return nil })
			if len(blobs) != 1 || blobs[0] != sha {
				t.Fatalf("blobs = %v", blobs)
			}
			if st, _ := s.Staged(ctx); len(st) != 0 {
				t.Fatalf("staging after ingest: %+v", st)
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestAppendRejects(t *testing.T) {
	ctx := context.Background()
	for _, ts := range stores(t) {
		t.Run(ts.name, func(t *testing.T) {
			s := ts.s
			data := []byte("hello world")
			id := catalog.NewID("upd", time.Now())
			// Too many bytes: refused, nothing kept.
			if _, err := s.Append(ctx, id, digest(data), 0, 5, bytes.NewReader(data)); !fault.Is(err, fault.TooLarge) {
				t.Fatalf("oversized: %v", err)
			}
			if n, _ := s.UploadOffset(ctx, id, digest(data)); n != 0 {
				t.Fatal("oversized upload left bytes behind")
			}
			// Wrong content: refused, nothing kept.
			wrong := digest([]byte("something else"))
			if _, err := s.Append(ctx, id, wrong, 0, int64(len(data)), bytes.NewReader(data)); !fault.Is(err, fault.Invalid) {
				t.Fatalf("hash mismatch: %v", err)
			}
			if n, _ := s.UploadOffset(ctx, id, wrong); n != 0 {
				t.Fatal("mismatched upload left bytes behind")
			}
			// Path tricks never reach the storage.
			for _, bad := range []string{"../../etc/passwd", "AA" + digest(data)[2:], ""} {
				if _, err := s.Open(ctx, bad); !fault.Is(err, fault.Invalid) {
					t.Errorf("Open(%q) = %v, want Invalid", bad, err)
				}
				if _, err := s.Append(ctx, id, bad, 0, 1, bytes.NewReader(nil)); !fault.Is(err, fault.Invalid) {
					t.Errorf("Append(%q) = %v, want Invalid", bad, err)
				}
			}
			if _, err := s.Append(ctx, "../x", digest(data), 0, 1, bytes.NewReader(nil)); !fault.Is(err, fault.Invalid) {
				t.Errorf("Append with a bad update id = %v", err)
			}
			if _, err := s.Open(ctx, digest(data)); !fault.Is(err, fault.NotFound) {
				t.Errorf("Open of a missing blob = %v", err)
			}
			if _, err := s.Ingest(ctx, id, digest(data), int64(len(data))); !fault.Is(err, fault.NotFound) {
				t.Errorf("Ingest of nothing staged = %v", err)
			}
		})
	}
}

// TestBlobLifecycle covers what the garbage collector and the delta jobs
// use: Put, Stat, Touch, LocalFile, Staged, Discard and Remove.
func TestBlobLifecycle(t *testing.T) {
	ctx := context.Background()
	for _, ts := range stores(t) {
		t.Run(ts.name, func(t *testing.T) {
			s := ts.s
			data := []byte("a delta made on the server")
			sha, err := s.Put(ctx, data)
			if err != nil || sha != digest(data) {
				t.Fatalf("Put = %s, %v", sha, err)
			}
			if again, err := s.Put(ctx, data); err != nil || again != sha {
				t.Fatalf("second Put = %s, %v", again, err)
			}
			b, err := s.Stat(ctx, sha)
			if err != nil || b.Size != int64(len(data)) || b.Modified.IsZero() {
				t.Fatalf("Stat = %+v, %v", b, err)
			}
			later := b.Modified.Add(2 * time.Second)
			time.Sleep(time.Until(later)) // the S3 marker takes the server's clock
			if err := s.Touch(ctx, sha, later); err != nil {
				t.Fatal(err)
			}
			if b2, _ := s.Stat(ctx, sha); !b2.Modified.After(b.Modified) {
				t.Fatalf("Touch did not move the time: %v, then %v", b.Modified, b2.Modified)
			}
			path, done, err := s.LocalFile(ctx, sha)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatalf("LocalFile holds %q", got)
			}
			done()
			// A staged upload shows until discarded.
			id := catalog.NewID("upd", time.Now())
			other := payload()
			if _, err := s.Append(ctx, id, digest(other), 0, int64(len(other)), bytes.NewReader(other[:partSize+10])); err != nil {
				t.Fatal(err)
			}
			st, err := s.Staged(ctx)
			if err != nil || len(st) != 1 || st[0].UpdateID != id || st[0].Modified.IsZero() {
				t.Fatalf("Staged = %+v, %v", st, err)
			}
			if err := s.Discard(ctx, id); err != nil {
				t.Fatal(err)
			}
			if st, _ := s.Staged(ctx); len(st) != 0 {
				t.Fatalf("Staged after Discard = %+v", st)
			}
			if n, _ := s.UploadOffset(ctx, id, digest(other)); n != 0 {
				t.Fatalf("offset after Discard = %d", n)
			}
			if err := s.Remove(ctx, sha); err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(ctx, sha); err != nil {
				t.Fatalf("second Remove: %v", err)
			}
			if s.Has(ctx, sha) {
				t.Fatal("removed blob still there")
			}
		})
	}
}

// TestS3 covers what only object storage does: a corrupted staged object,
// a tail left behind by a crash, copies in parts and presigned downloads.
func TestS3(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.SetEnv(t)
	s, err := OpenS3(ctx, S3Config{Bucket: srv.Bucket, Endpoint: srv.Endpoint, PathStyle: true, Presign: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	s.PartSize, s.CopyLimit = partSize, 2*partSize
	raw := srv.Client()
	data := payload()
	sha, size := digest(data), int64(len(data))
	id := catalog.NewID("upd", time.Now())

	// A crash after a part was sent but before the tail it absorbed was
	// removed leaves a stale tail: it must not count.
	if _, err := s.Append(ctx, id, sha, 0, size, bytes.NewReader(data[:100])); err != nil {
		t.Fatal(err)
	}
	stale := s.tailKey(id, sha, 1)
	tail, _ := raw.GetObject(ctx, &s3.GetObjectInput{Bucket: &srv.Bucket, Key: &stale})
	saved, _ := io.ReadAll(tail.Body)
	tail.Body.Close()
	if _, err := s.Append(ctx, id, sha, 100, size, bytes.NewReader(data[100:partSize+1])); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &stale, Body: bytes.NewReader(saved)}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.UploadOffset(ctx, id, sha); n != partSize+1 {
		t.Fatalf("offset with a stale tail = %d, want %d", n, partSize+1)
	}
	if off, err := s.Append(ctx, id, sha, partSize+1, size, bytes.NewReader(data[partSize+1:])); err != nil || off != size {
		t.Fatalf("finish: %d, %v", off, err)
	}

	// A staged object corrupted after upload fails ingest and is removed.
	key := s.stagingKey(id, sha)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 1
	if _, err := raw.PutObject(ctx, &s3.PutObjectInput{Bucket: &srv.Bucket, Key: &key, Body: bytes.NewReader(bad)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(ctx, id, sha, size); !fault.Is(err, fault.Invalid) {
		t.Fatalf("ingest of a corrupted staged object: %v", err)
	}
	if s.Has(ctx, sha) {
		t.Fatal("corrupted bytes were stored")
	}
	if _, err := raw.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &srv.Bucket, Key: &key}); !notFound(err) {
		t.Fatalf("corrupted staged object kept: %v", err)
	}

	// Larger than CopyLimit: copied in parts.
	if _, err := s.Append(ctx, id, sha, 0, size, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(ctx, id, sha, size); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadAll(ctx, s, sha, size); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copied in parts: %v", err)
	}

	// A size that is a multiple of the part size, and a process that died
	// after sending the last whole part but before completing the upload:
	// the next append of nothing, or the ingest, completes it.
	whole := data[:2*partSize]
	wholeSHA, wholeSize := digest(whole), int64(len(whole))
	for _, finish := range []string{"append", "ingest"} {
		wid := catalog.NewID("upd", time.Now())
		key := s.stagingKey(wid, wholeSHA)
		up, err := raw.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &srv.Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			part := whole[i*partSize : (i+1)*partSize]
			if _, err := raw.UploadPart(ctx, &s3.UploadPartInput{Bucket: &srv.Bucket, Key: &key, UploadId: up.UploadId,
				PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(part), ContentLength: aws.Int64(partSize)}); err != nil {
				t.Fatal(err)
			}
		}
		if n, _ := s.UploadOffset(ctx, wid, wholeSHA); n != wholeSize {
			t.Fatalf("%s: offset of an uncompleted upload in whole parts = %d, want %d", finish, n, wholeSize)
		}
		if finish == "append" {
			if n, err := s.Append(ctx, wid, wholeSHA, wholeSize, wholeSize, bytes.NewReader(nil)); err != nil || n != wholeSize {
				t.Fatalf("append of nothing at the end: %d, %v", n, err)
			}
		}
		if _, err := s.Ingest(ctx, wid, wholeSHA, wholeSize); err != nil {
			t.Fatalf("%s: ingest: %v", finish, err)
		}
		if got, err := ReadAll(ctx, s, wholeSHA, wholeSize); err != nil || !bytes.Equal(got, whole) {
			t.Fatalf("%s: stored bytes differ (%v)", finish, err)
		}
		if err := s.Remove(ctx, wholeSHA); err != nil {
			t.Fatal(err)
		}
	}

	// Downloads redirect to a presigned URL that needs no credentials.
	u, err := s.DownloadURL(ctx, sha)
	if err != nil || u == "" {
		t.Fatalf("DownloadURL = %q, %v", u, err)
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Range", "bytes=10-19")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[10:20]) {
		t.Fatalf("presigned ranged GET: %s %q", res.Status, got)
	}
	// With a CDN in front, downloads go there.
	s.cfg.BaseURL = "https://cdn.example.com/payloads/"
	if u, _ := s.DownloadURL(ctx, sha); u != "https://cdn.example.com/payloads/"+Key(sha) {
		t.Fatalf("CDN URL = %q", u)
	}
}
