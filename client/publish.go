package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// UploadOptions tune Upload.
type UploadOptions struct {
	// ChunkSize splits the upload into requests of at most this many bytes
	// (default 64 MiB), so a failure costs at most one chunk.
	ChunkSize int64
	// Retries is how many times a failed chunk is retried (default 5).
	Retries int
	// Progress, if set, is called with the bytes received by the server so far.
	Progress func(received int64)
}

// Upload sends a payload's bytes from src, resuming after whatever the
// server already has, in chunks, retrying failed chunks.
func (c *Client) Upload(ctx context.Context, updateID string, p Payload, src io.ReaderAt, opts UploadOptions) error {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 64 << 20
	}
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	path := "/v1/updates/" + updateID + "/payloads/" + p.SHA256
	offset, err := c.uploadOffset(ctx, path)
	if err != nil {
		return err
	}
	failures := 0
	for offset < p.Size {
		if opts.Progress != nil {
			opts.Progress(offset)
		}
		n := min(opts.ChunkSize, p.Size-offset)
		next, err := c.putChunk(ctx, path, src, offset, n, p.Size)
		if err != nil {
			var pe *Error
			if errors.As(err, &pe) && pe.Status != http.StatusConflict && pe.Status < 500 {
				return err // the server refused the bytes: retrying will not help
			}
			if failures++; failures > opts.Retries || ctx.Err() != nil {
				return fmt.Errorf("upload %s: %w", p.Name, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(failures) * 500 * time.Millisecond):
			}
			if next, err = c.uploadOffset(ctx, path); err != nil {
				return err
			}
		} else {
			failures = 0
		}
		offset = next
	}
	if opts.Progress != nil {
		opts.Progress(offset)
	}
	return nil
}

func (c *Client) uploadOffset(ctx context.Context, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.url(path, nil), nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) putChunk(ctx context.Context, path string, src io.ReaderAt, offset, n, size int64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url(path, nil), io.NewSectionReader(src, offset, n))
	if err != nil {
		return offset, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+n-1, size))
	resp, err := c.send(req)
	if err != nil {
		return offset, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

// HashFile returns the SHA-256 (hex) and size of a file.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// PublishOptions tune PublishFiles.
type PublishOptions struct {
	UploadOptions
	// OnFile, if set, is called before each file is uploaded (size in bytes).
	OnFile func(name string, size int64)
	// Poll is how often to check whether publishing has finished (default 250ms).
	Poll time.Duration
}

// PublishFiles publishes files as a new update: it makes sure the product
// exists, declares the update with each file's hash and size, uploads what
// the server does not already have, starts the pipeline and waits until the
// update is published. Repeating it with the same files is harmless.
func (c *Client) PublishFiles(ctx context.Context, u NewUpdate, files []string, opts PublishOptions) (Update, error) {
	if opts.Poll <= 0 {
		opts.Poll = 250 * time.Millisecond
	}
	u.Payloads = nil
	for _, f := range files {
		sum, size, err := HashFile(f)
		if err != nil {
			return Update{}, err
		}
		u.Payloads = append(u.Payloads, NewPayload{Name: filepath.Base(f), SHA256: sum, Size: size})
	}
	if _, err := c.Product(ctx, u.Product); IsKind(err, "not-found") {
		_, err = c.PutProduct(ctx, Product{Name: u.Product})
		if err != nil {
			return Update{}, err
		}
	} else if err != nil {
		return Update{}, err
	}
	created, err := c.CreateUpdate(ctx, u)
	if err != nil {
		return Update{}, err
	}
	for i, p := range created.Payloads {
		if p.State != "pending" {
			continue
		}
		if opts.OnFile != nil {
			opts.OnFile(p.Name, p.Size)
		}
		f, err := os.Open(files[i])
		if err != nil {
			return created, err
		}
		err = c.Upload(ctx, created.ID, p, f, opts.UploadOptions)
		f.Close()
		if err != nil {
			return created, err
		}
	}
	if _, err := c.Publish(ctx, created.ID); err != nil {
		return created, err
	}
	return c.WaitPublished(ctx, created.ID, opts.Poll)
}
