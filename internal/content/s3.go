package content

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// S3Config chooses a bucket of S3-compatible object storage. Credentials
// and region come from the standard AWS chain (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, shared config files, instance roles).
type S3Config struct {
	Bucket string
	// Endpoint is the server's URL for non-AWS storage; PathStyle puts
	// the bucket in the path instead of the host name.
	Endpoint  string
	PathStyle bool
	// Prefix is prepended to every key, so several services share a
	// bucket.
	Prefix string
	// Presign, when positive, answers downloads with a redirect to a
	// presigned GET valid this long instead of streaming them through
	// the server.
	Presign time.Duration
	// BaseURL, when set, answers downloads with a redirect to
	// BaseURL/KEY (a CDN in front of the bucket).
	BaseURL string
	// TempDir holds blobs copied out for a pipeline step's command.
	TempDir string
}

// S3 keeps blobs in a bucket under Key(sha). An upload is staged as a
// multipart upload at staging/UPDATE/SHA, in parts of exactly PartSize
// bytes; the bytes after the last whole part are kept as a "tail" object
// staging/UPDATE/SHA.tail.N (N is the part they will become), so any
// replica continues an upload that another began, and an interrupted body
// keeps what arrived. A complete upload becomes an object at its staging
// key, verified by streaming it back, and is copied to its digest's key on
// ingest.
type S3 struct {
	client  *s3.Client
	presign *s3.PresignClient
	cfg     S3Config
	// PartSize is the size of every part but the last (at least 5 MiB,
	// S3's minimum); CopyLimit the largest object copied in one request
	// (5 GiB on AWS), larger ones are copied in CopyLimit parts.
	PartSize  int64
	CopyLimit int64
}

var _ Store = (*S3)(nil)

// OpenS3 connects to the bucket and checks that it is reachable.
func OpenS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("content.s3.bucket is empty")
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("s3 credentials: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Integrity is the SHA-256 the store checks itself; optional
		// checksums only narrow the servers that work.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s := &S3{client: client, presign: s3.NewPresignClient(client), cfg: cfg, PartSize: 8 << 20, CopyLimit: 5 << 30}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &cfg.Bucket}); err != nil {
		return nil, fmt.Errorf("s3 bucket %s at %s: %w", cfg.Bucket, cmp.Or(cfg.Endpoint, "AWS"), err)
	}
	return s, nil
}

func (s *S3) blobKey(sha string) string        { return s.cfg.Prefix + Key(sha) }
func (s *S3) touchKey(sha string) string       { return s.cfg.Prefix + "touched/" + sha }
func (s *S3) stagingDir(id string) string      { return s.cfg.Prefix + "staging/" + id + "/" }
func (s *S3) stagingKey(id, sha string) string { return s.stagingDir(id) + sha }
func (s *S3) tailKey(id, sha string, part int32) string {
	return s.stagingKey(id, sha) + ".tail." + strconv.Itoa(int(part))
}

func notFound(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound" || ae.ErrorCode() == "NoSuchUpload")
}

// unavailable makes a storage failure a clear 503 instead of a 500.
func unavailable(err error, what string) error {
	if err == nil || fault.KindOf(err) != fault.Internal {
		return err
	}
	return fault.Wrap(err, fault.Unavailable, "content store: "+what)
}

func (s *S3) head(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	return s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
}

// Has implements Store.
func (s *S3) Has(ctx context.Context, sha string) bool {
	if catalog.ValidateSHA256("sha256", sha) != nil {
		return false
	}
	_, err := s.head(ctx, s.blobKey(sha))
	return err == nil
}

// Open implements Store: reads are ranged GETs, so a download's range
// costs only its bytes.
func (s *S3) Open(ctx context.Context, sha string) (Reader, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return nil, err
	}
	return s.openKey(ctx, s.blobKey(sha), "content "+sha)
}

func (s *S3) openKey(ctx context.Context, key, what string) (*objectReader, error) {
	h, err := s.head(ctx, key)
	if notFound(err) {
		return nil, fault.E(fault.NotFound, "%s not found", what)
	}
	if err != nil {
		return nil, unavailable(err, "read "+what)
	}
	return &objectReader{ctx: ctx, s: s, key: key, size: aws.ToInt64(h.ContentLength)}, nil
}

// objectReader reads an object from its current position with one GET
// per run of sequential reads.
type objectReader struct {
	ctx       context.Context
	s         *S3
	key       string
	size, pos int64
	body      io.ReadCloser
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.s.cfg.Bucket, Key: &r.key,
			Range: aws.String("bytes=" + strconv.FormatInt(r.pos, 10) + "-")})
		if err != nil {
			return 0, unavailable(err, "read "+r.key)
		}
		r.body = out.Body
	}
	n, err := r.body.Read(p)
	r.pos += int64(n)
	if err == io.EOF && r.pos < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *objectReader) Seek(offset int64, whence int) (int64, error) {
	pos := offset
	switch whence {
	case io.SeekCurrent:
		pos += r.pos
	case io.SeekEnd:
		pos += r.size
	}
	if pos < 0 {
		return r.pos, errors.New("seek before the start")
	}
	if pos != r.pos {
		r.Close()
		r.pos = pos
	}
	return pos, nil
}

func (r *objectReader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// Stat implements Store: a blob was last used when it was written or
// touched, whichever is later.
func (s *S3) Stat(ctx context.Context, sha string) (Blob, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return Blob{}, err
	}
	h, err := s.head(ctx, s.blobKey(sha))
	if notFound(err) {
		return Blob{}, fault.E(fault.NotFound, "content %s not found", sha)
	}
	if err != nil {
		return Blob{}, unavailable(err, "stat "+sha)
	}
	b := Blob{SHA256: sha, Size: aws.ToInt64(h.ContentLength), Modified: aws.ToTime(h.LastModified)}
	if t, err := s.head(ctx, s.touchKey(sha)); err == nil && aws.ToTime(t.LastModified).After(b.Modified) {
		b.Modified = aws.ToTime(t.LastModified)
	}
	return b, nil
}

// Touch implements Store with a marker object: S3 cannot change an
// object's time without copying it. The marker takes the store's clock.
func (s *S3) Touch(ctx context.Context, sha string, _ time.Time) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	return unavailable(s.put(ctx, s.touchKey(sha), nil), "touch "+sha)
}

func (s *S3) put(ctx context.Context, key string, data []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.cfg.Bucket, Key: &key,
		Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))})
	return err
}

func (s *S3) delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: &key})
	if notFound(err) {
		return nil
	}
	return err
}

// Remove implements Store.
func (s *S3) Remove(ctx context.Context, sha string) error {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return err
	}
	if err := s.delete(ctx, s.blobKey(sha)); err != nil {
		return unavailable(err, "remove "+sha)
	}
	return unavailable(s.delete(ctx, s.touchKey(sha)), "remove "+sha)
}

// objects calls fn with every object under prefix.
func (s *S3) objects(ctx context.Context, prefix string, fn func(types.Object) error) error {
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return unavailable(err, "list "+prefix)
		}
		for _, o := range page.Contents {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// uploads returns the multipart uploads under prefix, oldest first.
func (s *S3) uploads(ctx context.Context, prefix string) ([]types.MultipartUpload, error) {
	var all []types.MultipartUpload
	pages := s3.NewListMultipartUploadsPaginator(s.client, &s3.ListMultipartUploadsInput{Bucket: &s.cfg.Bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, unavailable(err, "list uploads "+prefix)
		}
		all = append(all, page.Uploads...)
	}
	slices.SortStableFunc(all, func(a, b types.MultipartUpload) int { return aws.ToTime(a.Initiated).Compare(aws.ToTime(b.Initiated)) })
	return all, nil
}

// Blobs implements Store.
func (s *S3) Blobs(ctx context.Context, fn func(sha string) error) error {
	return s.objects(ctx, s.cfg.Prefix+"sha256/", func(o types.Object) error {
		key := aws.ToString(o.Key)
		return fn(key[strings.LastIndexByte(key, '/')+1:])
	})
}

// Staged implements Store.
func (s *S3) Staged(ctx context.Context) ([]Staged, error) {
	prefix := s.cfg.Prefix + "staging/"
	latest := map[string]time.Time{}
	note := func(key string, t time.Time) {
		id, _, _ := strings.Cut(strings.TrimPrefix(key, prefix), "/")
		if t.After(latest[id]) || latest[id].IsZero() {
			latest[id] = t
		}
	}
	if err := s.objects(ctx, prefix, func(o types.Object) error {
		note(aws.ToString(o.Key), aws.ToTime(o.LastModified))
		return nil
	}); err != nil {
		return nil, err
	}
	ups, err := s.uploads(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for _, u := range ups {
		note(aws.ToString(u.Key), aws.ToTime(u.Initiated))
	}
	staged := make([]Staged, 0, len(latest))
	for id, t := range latest {
		staged = append(staged, Staged{UpdateID: id, Modified: t})
	}
	slices.SortFunc(staged, func(a, b Staged) int { return strings.Compare(a.UpdateID, b.UpdateID) })
	return staged, nil
}

// Discard implements Store.
func (s *S3) Discard(ctx context.Context, updateID string) error {
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return err
	}
	return s.discard(ctx, s.stagingDir(updateID))
}

// discard aborts the multipart uploads and deletes the objects under
// prefix.
func (s *S3) discard(ctx context.Context, prefix string) error {
	ups, err := s.uploads(ctx, prefix)
	if err != nil {
		return err
	}
	for _, u := range ups {
		_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: u.Key, UploadId: u.UploadId})
		if err != nil && !notFound(err) {
			return unavailable(err, "abort upload")
		}
	}
	return s.objects(ctx, prefix, func(o types.Object) error {
		return unavailable(s.delete(ctx, aws.ToString(o.Key)), "discard upload")
	})
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	if s.Has(ctx, sha) {
		return sha, nil
	}
	return sha, unavailable(s.put(ctx, s.blobKey(sha), data), "store "+sha)
}

// LocalFile implements Store: the blob is copied to a temporary file.
func (s *S3) LocalFile(ctx context.Context, sha string) (string, func(), error) {
	r, err := s.Open(ctx, sha)
	if err != nil {
		return "", nil, err
	}
	defer r.Close()
	f, err := os.CreateTemp(s.cfg.TempDir, "blob-*")
	if err != nil {
		return "", nil, err
	}
	done := func() { os.Remove(f.Name()) }
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return f.Name(), done, nil
}

// DownloadURL implements Store: the CDN's URL, or a presigned GET.
func (s *S3) DownloadURL(ctx context.Context, sha string) (string, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return "", err
	}
	switch {
	case s.cfg.BaseURL != "":
		return strings.TrimSuffix(s.cfg.BaseURL, "/") + "/" + s.blobKey(sha), nil
	case s.cfg.Presign > 0:
		req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.blobKey(sha))},
			s3.WithPresignExpires(s.cfg.Presign))
		if err != nil {
			return "", unavailable(err, "presign "+sha)
		}
		return req.URL, nil
	}
	return "", nil
}

// staged is what the bucket holds of one upload.
type staged struct {
	complete int64 // size of the completed object; -1 while in parts
	uploadID string
	parts    []types.CompletedPart // parts 1..n, each PartSize bytes
	tail     string                // key of the valid tail, if any
	tailSize int64
}

func (st staged) offset(partSize int64) int64 {
	if st.complete >= 0 {
		return st.complete
	}
	return int64(len(st.parts))*partSize + st.tailSize
}

// state reads an upload's parts and tail from the bucket. Parts are
// counted while they run 1, 2, 3… at exactly PartSize; a tail counts
// only when it continues them, so a crash between uploading a part and
// removing the tail it absorbed double-counts nothing.
func (s *S3) state(ctx context.Context, updateID, sha string) (staged, error) {
	key := s.stagingKey(updateID, sha)
	st := staged{complete: -1}
	h, err := s.head(ctx, key)
	if err == nil {
		st.complete = aws.ToInt64(h.ContentLength)
		return st, nil
	}
	if !notFound(err) {
		return st, unavailable(err, "read upload")
	}
	ups, err := s.uploads(ctx, key)
	if err != nil {
		return st, err
	}
	for _, u := range ups {
		if aws.ToString(u.Key) == key {
			st.uploadID = aws.ToString(u.UploadId)
			break
		}
	}
	if st.uploadID != "" {
		pages := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{Bucket: &s.cfg.Bucket, Key: &key, UploadId: &st.uploadID})
		var parts []types.Part
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return st, unavailable(err, "list parts")
			}
			parts = append(parts, page.Parts...)
		}
		slices.SortFunc(parts, func(a, b types.Part) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
		for i, p := range parts {
			if aws.ToInt32(p.PartNumber) != int32(i+1) || aws.ToInt64(p.Size) != s.PartSize {
				break
			}
			st.parts = append(st.parts, types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag})
		}
	}
	want := s.tailKey(updateID, sha, int32(len(st.parts)+1))
	err = s.objects(ctx, key+".tail.", func(o types.Object) error {
		if aws.ToString(o.Key) == want {
			st.tail, st.tailSize = want, aws.ToInt64(o.Size)
		}
		return nil
	})
	return st, err
}

// UploadOffset implements Store.
func (s *S3) UploadOffset(ctx context.Context, updateID, sha string) (int64, error) {
	if catalog.ValidateSHA256("sha256", sha) != nil || catalog.ValidateID("update", "upd", updateID) != nil {
		return 0, nil
	}
	st, err := s.state(ctx, updateID, sha)
	if err != nil {
		return 0, err
	}
	return st.offset(s.PartSize), nil
}

// Append implements Store. Whole parts are uploaded as they fill; the
// rest of an interrupted or short body is kept as the tail. A body
// longer than the declared size discards the whole staged upload, since
// parts already sent cannot be taken back one by one.
func (s *S3) Append(ctx context.Context, updateID, sha string, offset, size int64, r io.Reader) (int64, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return 0, err
	}
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return 0, err
	}
	key := s.stagingKey(updateID, sha)
	st, err := s.state(ctx, updateID, sha)
	if err != nil {
		return 0, err
	}
	have := st.offset(s.PartSize)
	if offset == 0 && have > 0 || offset == 0 && st.uploadID != "" {
		if err := s.discard(ctx, key); err != nil {
			return have, err
		}
		st, have = staged{complete: -1}, 0
	}
	if offset != have {
		return have, fault.E(fault.Conflict, "upload offset is %d, not %d; resume from %d", have, offset, have)
	}
	if st.complete >= 0 {
		return have, nil
	}
	if have == size {
		// Whole parts hold every byte (a size that is a multiple of the
		// part size) but the process that sent the last one died before
		// completing the upload: complete it now.
		return s.finish(ctx, updateID, sha, size, st, nil)
	}
	// The buffer holds the part being filled: the tail kept so far, then
	// the body.
	buf := make([]byte, 0, min(s.PartSize, size-int64(len(st.parts))*s.PartSize))
	if st.tail != "" {
		t, err := s.openKey(ctx, st.tail, "upload tail")
		if err != nil {
			return have, err
		}
		_, err = io.ReadFull(t, buf[:st.tailSize])
		t.Close()
		if err != nil {
			return have, unavailable(err, "read upload tail")
		}
		buf = buf[:st.tailSize]
	}
	kept := have // bytes durable in the bucket
	body := io.LimitReader(r, size-have+1)
	for {
		n, rerr := io.ReadFull(body, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		received := int64(len(st.parts))*s.PartSize + int64(len(buf))
		if received > size || rerr == nil && received == size && s.more(body) {
			_ = s.discard(context.WithoutCancel(ctx), key)
			return 0, fault.E(fault.TooLarge, "payload is larger than its declared size of %d bytes; the upload was discarded", size)
		}
		if received == size {
			return s.finish(ctx, updateID, sha, size, st, buf)
		}
		if len(buf) == cap(buf) { // a whole part, not the last
			if st, err = s.uploadPart(ctx, key, st, buf); err != nil {
				return kept, err
			}
			kept, buf = received, buf[:0]
			continue
		}
		// The body ended or broke before the part filled: keep what came,
		// even when the client has gone away.
		if received > kept {
			save, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			err := s.put(save, s.tailKey(updateID, sha, int32(len(st.parts)+1)), buf)
			cancel()
			if err != nil {
				return kept, unavailable(err, "keep upload")
			}
			kept = received
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return kept, nil
		}
		return kept, fault.Wrap(rerr, fault.Invalid, "upload interrupted")
	}
}

// more reports whether a body has bytes beyond those expected.
func (s *S3) more(r io.Reader) bool {
	n, _ := r.Read(make([]byte, 1))
	return n > 0
}

// uploadPart sends a whole part, starting the multipart upload first if
// there is none, and removes the tail the part absorbed.
func (s *S3) uploadPart(ctx context.Context, key string, st staged, part []byte) (staged, error) {
	if st.uploadID == "" {
		out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &key})
		if err != nil {
			return st, unavailable(err, "start upload")
		}
		st.uploadID = aws.ToString(out.UploadId)
	}
	num := int32(len(st.parts) + 1)
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{Bucket: &s.cfg.Bucket, Key: &key, UploadId: &st.uploadID,
		PartNumber: aws.Int32(num), Body: bytes.NewReader(part), ContentLength: aws.Int64(int64(len(part)))})
	if err != nil {
		return st, unavailable(err, "upload part")
	}
	st.parts = append(st.parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag})
	if st.tail != "" {
		_ = s.delete(ctx, st.tail) // stale now whether or not this succeeds
		st.tail, st.tailSize = "", 0
	}
	return st, nil
}

// finish stores the last bytes (none when whole parts already hold them
// all), completes the upload into one object at the staging key and
// checks its SHA-256 by reading it back.
func (s *S3) finish(ctx context.Context, updateID, sha string, size int64, st staged, last []byte) (int64, error) {
	key := s.stagingKey(updateID, sha)
	if len(st.parts) == 0 {
		if err := s.put(ctx, key, last); err != nil {
			return st.offset(s.PartSize), unavailable(err, "store upload")
		}
	} else {
		var err error
		if len(last) > 0 {
			if st, err = s.uploadPart(ctx, key, st, last); err != nil {
				return int64(len(st.parts)) * s.PartSize, err
			}
		}
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &key,
			UploadId: &st.uploadID, MultipartUpload: &types.CompletedMultipartUpload{Parts: st.parts}})
		if err != nil {
			return int64(len(st.parts)-1) * s.PartSize, unavailable(err, "complete upload")
		}
	}
	_ = s.objects(ctx, key+".tail.", func(o types.Object) error { return s.delete(ctx, aws.ToString(o.Key)) })
	if _, err := s.verify(ctx, key, "received", sha, size); err != nil {
		if fault.Is(err, fault.Invalid) {
			_ = s.delete(ctx, key)
			return 0, fault.E(fault.Invalid, "%s; the upload was discarded", err)
		}
		return size, err
	}
	return size, nil
}

// verify streams an object and checks its size and SHA-256 (what names
// it in errors: "staged", "stored"), returning its other digests.
func (s *S3) verify(ctx context.Context, key, what, sha string, size int64) (catalog.Digests, error) {
	r, err := s.openKey(ctx, key, what+" upload of "+sha)
	if err != nil {
		return catalog.Digests{}, err
	}
	defer r.Close()
	if r.size != size {
		return catalog.Digests{}, fault.E(fault.Invalid, "size mismatch: declared %d bytes, %s %d", size, what, r.size)
	}
	return check(r, what, sha, size)
}

// Ingest implements Store: the verified staged object is copied to its
// digest's key (server side, in parts beyond CopyLimit) and then removed.
func (s *S3) Ingest(ctx context.Context, updateID, sha string, size int64) (catalog.Digests, error) {
	if err := catalog.ValidateSHA256("sha256", sha); err != nil {
		return catalog.Digests{}, err
	}
	if err := catalog.ValidateID("update", "upd", updateID); err != nil {
		return catalog.Digests{}, err
	}
	key := s.stagingKey(updateID, sha)
	if s.Has(ctx, sha) {
		if err := s.discard(ctx, key); err != nil {
			return catalog.Digests{}, err
		}
		return s.verify(ctx, s.blobKey(sha), "stored", sha, size)
	}
	d, err := s.verify(ctx, key, "staged", sha, size)
	if fault.Is(err, fault.NotFound) {
		// Every byte arrived in whole parts, but the upload was never
		// completed (its process died at the last part): complete it.
		if st, serr := s.state(ctx, updateID, sha); serr == nil && st.complete < 0 && st.offset(s.PartSize) == size && len(st.parts) > 0 {
			if _, err = s.finish(ctx, updateID, sha, size, st, nil); err == nil {
				d, err = s.verify(ctx, key, "staged", sha, size)
			}
		}
	}
	if err != nil {
		if fault.Is(err, fault.Invalid) {
			_ = s.delete(ctx, key)
		}
		return d, err
	}
	if err := s.copy(ctx, key, s.blobKey(sha), size); err != nil {
		return d, unavailable(err, "store "+sha)
	}
	return d, unavailable(s.delete(ctx, key), "remove staged "+sha)
}

func (s *S3) copy(ctx context.Context, from, to string, size int64) error {
	source := url.PathEscape(s.cfg.Bucket) + "/" + escapeKey(from)
	if size <= s.CopyLimit {
		_, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.cfg.Bucket, Key: &to, CopySource: &source})
		return err
	}
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &to})
	if err != nil {
		return err
	}
	var parts []types.CompletedPart
	for start, num := int64(0), int32(1); start < size; start, num = start+s.CopyLimit, num+1 {
		end := min(start+s.CopyLimit, size) - 1
		out, err := s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{Bucket: &s.cfg.Bucket, Key: &to, UploadId: up.UploadId,
			PartNumber: aws.Int32(num), CopySource: &source, CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", start, end))})
		if err != nil {
			_, _ = s.client.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &to, UploadId: up.UploadId})
			return err
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.CopyPartResult.ETag})
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &s.cfg.Bucket, Key: &to,
		UploadId: up.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	return err
}

func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
