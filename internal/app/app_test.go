package app_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/cli"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
)

func TestMain(m *testing.M) {
	// The kill -9 test runs this binary as a server child process.
	if os.Getenv("RINGMASTER_TEST_CHILD") == "serve" {
		ctx, _ := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		os.Exit(cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(dbtest.Main(m))
}

// server is an in-process Ringmaster on 127.0.0.1:0.
type server struct {
	*app.App
	url, data, token string
	admin            *client.Client
	device           *client.Client
	enrolled         *enrolledFleet
}

func startServer(t *testing.T, dsn string) *server {
	t.Helper()
	return startServerWith(t, dsn, nil)
}

// startServerWith starts a server after mut adjusts its configuration.
func startServerWith(t *testing.T, dsn string, mut func(*config.Config)) *server {
	t.Helper()
	a := apptest.Start(t, dsn, mut)
	s := &server{App: a.App, url: a.URL, data: a.Data, token: a.Token, admin: a.Admin}
	s.device, _ = client.New(s.url, "")
	return s
}

func writeRandomFile(t *testing.T, size int) (string, string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

// legacyDigests returns a file's SHA-1 and MD5 (hex), as the server
// records them when it stores a payload.
func legacyDigests(t *testing.T, path string) (string, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha1.Sum(b)), fmt.Sprintf("%x", md5.Sum(b))
}

func countBlobs(t *testing.T, data string) (blobs, staged int) {
	t.Helper()
	for dir, n := range map[string]*int{"content/sha256": &blobs, "content/staging": &staged} {
		filepath.WalkDir(filepath.Join(data, dir), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				*n++
			}
			return nil
		})
	}
	return blobs, staged
}

// TestPublishDeployDownload is the foundation's end-to-end path on both
// databases: publish 20 MB, deploy, a device is offered it, downloads it in
// two ranged requests and the SHA-256 matches.
func TestPublishDeployDownload(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := ""
			if b.Name == "postgres" {
				dsn = b.DSN(t)
			}
			s := startServer(t, dsn)
			ctx := context.Background()
			path, sum := writeRandomFile(t, 20<<20)

			var progress []int64
			u, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "contoso-agent", Version: "1.1.0", Kind: "app"},
				[]string{path}, client.PublishOptions{UploadOptions: client.UploadOptions{
					ChunkSize: 8 << 20, Progress: func(n int64) { progress = append(progress, n) }}})
			if err != nil {
				t.Fatal(err)
			}
			if u.State != "published" || len(u.Payloads) != 1 || u.Payloads[0].SHA256 != sum || u.Payloads[0].State != "stored" {
				t.Fatalf("published update = %+v", u)
			}
			if s1, m5 := legacyDigests(t, path); u.Payloads[0].SHA1 != s1 || u.Payloads[0].MD5 != m5 {
				t.Fatalf("stored payload's sha1 %q and md5 %q; the file's are %s and %s", u.Payloads[0].SHA1, u.Payloads[0].MD5, s1, m5)
			}
			if len(progress) < 3 || progress[len(progress)-1] != 20<<20 {
				t.Fatalf("upload went in %v; want several chunks ending at 20 MiB", progress)
			}
			// Publishing the same files again is idempotent.
			again, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "contoso-agent", Version: "1.1.0", Kind: "app"},
				[]string{path}, client.PublishOptions{})
			if err != nil || again.ID != u.ID {
				t.Fatalf("republish = %s, %v; want %s", again.ID, err, u.ID)
			}
			if blobs, staged := countBlobs(t, s.data); blobs != 1 || staged != 0 {
				t.Fatalf("content store has %d blobs and %d staged files; want 1 and 0", blobs, staged)
			}

			dev := client.CheckInRequest{DeviceID: "laptop-42", Attributes: map[string]string{"arch": "x64"},
				Installed: []client.Installed{{Product: "contoso-agent", Version: "1.0.0"}}}
			if resp, _ := s.device.CheckIn(ctx, dev); len(resp.Offers) != 0 {
				t.Fatalf("offered before any deployment: %+v", resp.Offers)
			}
			d, err := s.admin.Deploy(ctx, "contoso-agent", "1.1.0")
			if err != nil || d.State != "running" {
				t.Fatalf("deploy = %+v, %v", d, err)
			}
			resp, err := s.device.CheckIn(ctx, dev)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Offers) != 1 || resp.Offers[0].UpdateID != u.ID || resp.Offers[0].Version != "1.1.0" || resp.NextCheckSeconds != 3600 {
				t.Fatalf("check-in answer = %+v", resp)
			}
			link := resp.Offers[0].Payloads[0]
			if link.SHA256 != sum || link.Size != 20<<20 {
				t.Fatalf("payload link = %+v", link)
			}
			var got bytes.Buffer
			if err := s.device.Download(ctx, link, &got, link.Size/2+1); err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(got.Bytes())
			if hex.EncodeToString(h[:]) != sum {
				t.Fatal("downloaded bytes do not match")
			}

			// Devices at or above the version, or without the product, get nothing.
			for _, other := range []client.CheckInRequest{
				{DeviceID: "d2", Installed: []client.Installed{{Product: "contoso-agent", Version: "1.1.0"}}},
				{DeviceID: "d3", Installed: []client.Installed{{Product: "contoso-agent", Version: "1.2"}}},
				{DeviceID: "d4", Installed: []client.Installed{{Product: "windows-11", Version: "1.0"}}},
			} {
				if r, err := s.device.CheckIn(ctx, other); err != nil || len(r.Offers) != 0 {
					t.Fatalf("%s was offered %+v (%v)", other.DeviceID, r.Offers, err)
				}
			}

			// The registry records the device off the request path.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var reg struct {
					ID         string            `json:"id"`
					Attributes map[string]string `json:"attributes"`
					Installed  map[string]string `json:"installed"`
				}
				err := getJSON(s, "/v1/devices/laptop-42", &reg)
				if err == nil && reg.Attributes["arch"] == "x64" && reg.Installed["contoso-agent"] == "1.0.0" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("device not in the registry: %+v, %v", reg, err)
				}
				time.Sleep(50 * time.Millisecond)
			}

			// Cancelling stops the offer at once.
			if cd, err := s.admin.CancelDeployment(ctx, d.ID, "test over"); err != nil || cd.State != "cancelled" {
				t.Fatalf("cancel = %+v, %v", cd, err)
			}
			if r, _ := s.device.CheckIn(ctx, dev); len(r.Offers) != 0 {
				t.Fatalf("offered after cancel: %+v", r.Offers)
			}
		})
	}
}

func getJSON(s *server, path string, out any) error {
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return &client.Error{Status: resp.StatusCode, Detail: string(b)}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// TestContentServing checks HEAD, ranges and validators on payload downloads.
func TestContentServing(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	path, sum := writeRandomFile(t, 1000)
	if _, err := s.admin.PublishFiles(ctx, client.NewUpdate{Product: "p", Version: "1"}, []string{path}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	url := s.url + "/v1/content/" + sum
	do := func(method string, hdr ...string) *http.Response {
		req, _ := http.NewRequest(method, url, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := do(http.MethodHead); r.StatusCode != 200 || r.ContentLength != 1000 || r.Header.Get("ETag") != `"`+sum+`"` || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d, %d, %v", r.StatusCode, r.ContentLength, r.Header)
	}
	if r := do(http.MethodGet, "If-None-Match", `"`+sum+`"`); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r := do(http.MethodGet, "Range", "bytes=100-199"); r.StatusCode != http.StatusPartialContent || r.ContentLength != 100 ||
		r.Header.Get("Content-Range") != "bytes 100-199/1000" {
		t.Fatalf("Range: %d, %d, %v", r.StatusCode, r.ContentLength, r.Header)
	}
	if r := do(http.MethodGet, "Range", "bytes=5000-6000"); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable Range: %d", r.StatusCode)
	}
	if r := do(http.MethodGet, "If-Range", `"other"`, "Range", "bytes=0-9"); r.StatusCode != 200 || r.ContentLength != 1000 {
		t.Fatalf("If-Range with a stale ETag: %d, %d", r.StatusCode, r.ContentLength)
	}
}
