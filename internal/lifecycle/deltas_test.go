package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/bench"
)

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// publishAs publishes file as product version under the payload name.
func publishAs(t *testing.T, s *apptest.Server, product, version, file, name string) client.Update {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := s.Admin.PublishFiles(context.Background(), client.NewUpdate{Product: product, Version: version, Kind: "app"}, []string{p}, client.PublishOptions{Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func pinnedRoot(t *testing.T, s *apptest.Server) []byte {
	t.Helper()
	resp, err := http.Get(s.URL + "/v1/tuf/root.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("root.json: %s, %v", resp.Status, err)
	}
	return b
}

// TestDeltaEndToEnd: two real builds of a Go program are published as 1.0
// and 1.1; the pipeline makes a delta after the publish; a device on 1.0
// is offered it beside the full payload, the SDK rebuilds 1.1 from its
// installed file and the result is 1.1 to the byte. A corrupted delta is
// refused and the device falls back to the full payload; a device on a
// build the server does not know gets the full payload only.
func TestDeltaEndToEnd(t *testing.T) {
	ctx := context.Background()
	old, new, err := bench.BuildGoPair(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := apptest.Start(t, "", nil)
	publishAs(t, s, "svc", "1.0", old, "svc")
	u11 := publishAs(t, s, "svc", "1.1", new, "svc")
	if _, err := s.Admin.DeployPlan(ctx, "svc", "1.1", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h"}); err != nil {
		t.Fatal(err)
	}
	device, _ := client.New(s.URL, "")
	offer := func(id, installed string) client.Offer {
		t.Helper()
		var got client.Offer
		apptest.WaitFor(t, 60*time.Second, func() bool {
			r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: id, Installed: []client.Installed{{Product: "svc", Version: installed}}})
			if err != nil || len(r.Offers) != 1 {
				return false
			}
			got = r.Offers[0]
			return installed != "1.0" || got.Payloads[0].Delta != nil // the delta job runs after the publish
		})
		return got
	}
	o := offer("dev-on-1.0", "1.0")
	p := o.Payloads[0]
	want := fileSHA256(t, new)
	if p.SHA256 != want || p.Delta.FromVersion != "1.0" || p.Delta.FromSHA256 != fileSHA256(t, old) || p.Delta.Size >= p.Size {
		t.Fatalf("offer to a device on 1.0: payload %+v, delta %+v", p, p.Delta)
	}
	ds, err := s.Admin.UpdateDeltas(ctx, u11.ID)
	if err != nil || len(ds) != 1 || ds[0].State != "ready" || ds[0].SHA256 != p.Delta.SHA256 {
		t.Fatalf("deltas of 1.1: %+v, %v", ds, err)
	}
	t.Logf("delta %d bytes for a %d-byte payload (%.1f%%)", p.Delta.Size, p.Size, 100*float64(p.Delta.Size)/float64(p.Size))

	root := pinnedRoot(t, s)
	installed := func(product, name string) string {
		if product == "svc" && name == "svc" {
			return old
		}
		return ""
	}
	fetch := func() client.Fetched {
		t.Helper()
		up, err := device.NewUpdater(client.UpdaterConfig{TrustedRoot: root, CacheDir: t.TempDir(), Installed: installed})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		got, err := up.FetchFiles(ctx, o, dir)
		if err != nil || len(got) != 1 {
			t.Fatalf("fetch: %+v, %v", got, err)
		}
		if sum := fileSHA256(t, got[0].Path); sum != want {
			t.Fatalf("fetched file has SHA-256 %s, 1.1 is %s", sum, want)
		}
		if leftovers, _ := filepath.Glob(filepath.Join(dir, ".download-*")); len(leftovers) > 0 {
			t.Fatalf("temporary files left behind: %v", leftovers)
		}
		return got[0]
	}
	if f := fetch(); !f.Delta || f.DeltaError != "" || f.Downloaded != p.Delta.Size {
		t.Fatalf("fetch with a delta: %+v", f)
	}

	// Corrupt the stored delta (same length): the download no longer
	// matches the signed target, and the device falls back.
	blob := filepath.Join(s.Data, "content", "sha256", p.Delta.SHA256[:2], p.Delta.SHA256)
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blob, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if f := fetch(); f.Delta || !strings.Contains(f.DeltaError, "does not match") || f.Downloaded != p.Size+p.Delta.Size {
		t.Fatalf("fetch with a corrupted delta: %+v", f)
	}

	// A device on a build the server never published: the full payload.
	if o := offer("dev-on-0.9", "0.9"); o.Payloads[0].Delta != nil {
		t.Fatalf("a device on an unknown build was offered a delta: %+v", o.Payloads[0].Delta)
	}
}
