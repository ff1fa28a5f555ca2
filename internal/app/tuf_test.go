package app_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	tufconfig "github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/tuf"
)

// mirror is an attacker-controlled mirror (or CDN) in front of a live
// server: it passes requests through, remembers every answer, and can
// rewrite any of them.
type mirror struct {
	*httptest.Server
	tamper atomic.Pointer[func(path string, body []byte) []byte]
	mu     sync.Mutex
	seen   map[string][]byte
}

func newMirror(t *testing.T, upstream string) *mirror {
	m := &mirror{seen: map[string][]byte{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m.mu.Lock()
		m.seen[r.URL.Path] = body
		m.mu.Unlock()
		status := resp.StatusCode
		if f := m.tamper.Load(); f != nil {
			forged := (*f)(r.URL.Path, body)
			if status == http.StatusNotFound && !bytes.Equal(forged, body) {
				status = http.StatusOK // the mirror serves a file the server never had
			}
			body = forged
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *mirror) set(f func(path string, body []byte) []byte) { m.tamper.Store(&f) }
func (m *mirror) honest()                                     { m.tamper.Store(nil) }

func (m *mirror) recorded(path string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[path]
}

// stockClient is an unmodified go-tuf updater that keeps its trusted
// metadata in dir between refreshes, as a device would.
type stockClient struct {
	t      *testing.T
	dir    string
	pinned []byte
}

func (c *stockClient) refresh(base string) (*updater.Updater, error) {
	root := c.pinned
	if b, err := os.ReadFile(filepath.Join(c.dir, "metadata", "root.json")); err == nil {
		root = b
	}
	cfg, err := tufconfig.New(base+"/v1/tuf", root)
	if err != nil {
		return nil, err
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = filepath.Join(c.dir, "metadata"), filepath.Join(c.dir, "targets")
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	return up, up.Refresh()
}

// fetch refreshes through base and downloads the target at path.
func (c *stockClient) fetch(base, path string) ([]byte, error) {
	up, err := c.refresh(base)
	if err != nil {
		return nil, err
	}
	ti, err := up.GetTargetInfo(path)
	if err != nil {
		return nil, err
	}
	_, data, err := up.DownloadTarget(ti, filepath.Join(c.t.TempDir(), "target"), "")
	return data, err
}

func wantErr(t *testing.T, what string, err error, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted", what)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("%s: rejected, but with %v (want %T)", what, err, target)
	}
}

func publishFile(t *testing.T, s *server, product, ver string) ([]byte, client.Update) {
	t.Helper()
	path, _ := writeRandomFile(t, 4096)
	u, err := s.admin.PublishFiles(context.Background(), client.NewUpdate{Product: product, Version: ver}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	return b, u
}

// onlineSigner loads the server's own key for an online role, as an
// attacker who stole it would.
func onlineSigner(t *testing.T, s *server, role string) signature.Signer {
	t.Helper()
	root, err := metadata.Root().FromBytes(mustGet(t, s.url+"/v1/tuf/root.json"))
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := os.ReadFile(filepath.Join(s.data, "keys.passphrase"))
	id := root.Signed.Roles[role].KeyIDs[0]
	signer, _, err := tuf.LoadSigner(filepath.Join(s.data, "keys", id+".key"), pass)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// TestTUFAttacks: a stock go-tuf updater, pinned to the server's root and
// fetching through a compromised mirror, refuses every attack in TUF's
// list, and accepts the legitimate update after online-key and root
// rotations.
func TestTUFAttacks(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	pinned := mustGet(t, s.url+"/v1/tuf/root.json")
	want1, _ := publishFile(t, s, "agent", "1.0")
	m := newMirror(t, s.url)
	dev := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
	got, err := dev.fetch(m.URL, "agent/1.0/payload.bin")
	if err != nil || !bytes.Equal(got, want1) {
		t.Fatalf("honest mirror: %v", err)
	}
	// What the mirror served for release 1.0, kept for replays.
	oldTimestamp := m.recorded("/v1/tuf/timestamp.json")
	ts, err := metadata.Timestamp().FromBytes(oldTimestamp)
	if err != nil {
		t.Fatal(err)
	}
	snapV := ts.Signed.Meta["snapshot.json"].Version
	oldSnapBytes := m.recorded(fmt.Sprintf("/v1/tuf/%d.snapshot.json", snapV))
	oldSnap, err := metadata.Snapshot().FromBytes(oldSnapBytes)
	if err != nil {
		t.Fatalf("the mirror saw no snapshot %d: %v", snapV, err)
	}
	oldTargetsBytes := m.recorded(fmt.Sprintf("/v1/tuf/%d.targets.json", oldSnap.Signed.Meta["targets.json"].Version))
	want2, _ := publishFile(t, s, "agent", "2.0")
	if got, err := dev.fetch(m.URL, "agent/2.0/payload.bin"); err != nil || !bytes.Equal(got, want2) {
		t.Fatalf("second release: %v", err)
	}

	isTarget := func(p string) bool { return strings.HasPrefix(p, "/v1/tuf/targets/") }
	t.Run("arbitrary software: a tampered payload", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if isTarget(p) {
				b = bytes.Clone(b)
				b[100] ^= 1
			}
			return b
		})
		defer m.honest()
		_, err := dev.fetch(m.URL, "agent/2.0/payload.bin")
		wantErr(t, "tampered payload", err, &metadata.ErrLengthOrHashMismatch{})
	})
	t.Run("endless data: an oversized payload", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if isTarget(p) {
				return append(bytes.Clone(b), make([]byte, 1<<20)...)
			}
			return b
		})
		defer m.honest()
		_, err := dev.fetch(m.URL, "agent/2.0/payload.bin")
		wantErr(t, "oversized payload", err, &metadata.ErrDownloadLengthMismatch{})
	})
	t.Run("endless data: an oversized timestamp", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if p == "/v1/tuf/timestamp.json" {
				return append(bytes.Clone(b), bytes.Repeat([]byte(" "), 20000)...)
			}
			return b
		})
		defer m.honest()
		_, err := dev.refresh(m.URL)
		wantErr(t, "oversized timestamp", err, &metadata.ErrDownloadLengthMismatch{})
	})
	t.Run("rollback: an old timestamp replayed", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if p == "/v1/tuf/timestamp.json" {
				return oldTimestamp
			}
			return b
		})
		defer m.honest()
		_, err := dev.refresh(m.URL)
		wantErr(t, "replayed timestamp", err, &metadata.ErrBadVersionNumber{})
	})
	t.Run("mix and match: an old snapshot under the new name", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if strings.HasSuffix(p, ".snapshot.json") {
				return oldSnapBytes
			}
			return b
		})
		defer m.honest()
		fresh := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
		_, err := fresh.refresh(m.URL)
		wantErr(t, "mixed snapshot", err, &metadata.ErrLengthOrHashMismatch{})
	})
	t.Run("mix and match: old targets under the new name", func(t *testing.T) {
		m.set(func(p string, b []byte) []byte {
			if strings.HasSuffix(p, ".targets.json") {
				return oldTargetsBytes
			}
			return b
		})
		defer m.honest()
		fresh := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
		_, err := fresh.refresh(m.URL)
		wantErr(t, "mixed targets", err, &metadata.ErrBadVersionNumber{})
	})
	t.Run("metadata signed by the wrong key", func(t *testing.T) {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		attacker, _ := signature.LoadED25519Signer(priv)
		m.set(func(p string, b []byte) []byte {
			if p != "/v1/tuf/timestamp.json" {
				return b
			}
			ts, err := metadata.Timestamp().FromBytes(b)
			if err != nil {
				return b
			}
			ts.Signed.Version += 10
			ts.ClearSignatures()
			ts.Sign(attacker)
			out, _ := ts.ToBytes(false)
			return out
		})
		defer m.honest()
		_, err := dev.refresh(m.URL)
		wantErr(t, "wrongly signed timestamp", err, &metadata.ErrUnsignedMetadata{})
	})
	t.Run("compromised online keys cannot roll back snapshot or targets", func(t *testing.T) {
		tsKey, snapKey := onlineSigner(t, s, tuf.Timestamp), onlineSigner(t, s, tuf.Snapshot)
		cur, _ := metadata.Timestamp().FromBytes(mustGet(t, s.url+"/v1/tuf/timestamp.json"))
		// A timestamp signed with the real timestamp key that points at
		// the old snapshot.
		forgedTS := func(snapVersion int64, snap []byte) []byte {
			ts := metadata.Timestamp(time.Now().Add(time.Hour))
			ts.Signed.Version = cur.Signed.Version + 5
			sum := sha256.Sum256(snap)
			ts.Signed.Meta["snapshot.json"] = &metadata.MetaFiles{Version: snapVersion, Length: int64(len(snap)), Hashes: metadata.Hashes{"sha256": sum[:]}}
			ts.Sign(tsKey)
			b, _ := ts.ToBytes(false)
			return b
		}
		m.set(func(p string, b []byte) []byte {
			if p == "/v1/tuf/timestamp.json" {
				return forgedTS(snapV, oldSnapBytes)
			}
			return b
		})
		_, err := dev.refresh(m.URL)
		wantErr(t, "snapshot rollback with the timestamp key", err, &metadata.ErrBadVersionNumber{})
		// Both keys: a new snapshot version that lists the old targets.
		curSnap, _ := metadata.Snapshot().FromBytes(mustGet(t, s.url+"/v1/tuf/snapshot.json"))
		snap := metadata.Snapshot(time.Now().Add(time.Hour))
		snap.Signed.Version = curSnap.Signed.Version + 5
		snap.Signed.Meta["targets.json"] = metadata.MetaFile(oldSnap.Signed.Meta["targets.json"].Version)
		snap.Sign(snapKey)
		snapBytes, _ := snap.ToBytes(false)
		m.set(func(p string, b []byte) []byte {
			switch {
			case p == "/v1/tuf/timestamp.json":
				return forgedTS(snap.Signed.Version, snapBytes)
			case strings.HasSuffix(p, ".snapshot.json"):
				return snapBytes
			}
			return b
		})
		defer m.honest()
		_, err = dev.refresh(m.URL)
		wantErr(t, "targets rollback with the timestamp and snapshot keys", err, &metadata.ErrBadVersionNumber{})
	})
	t.Run("the SDK updater refuses an offer the targets key did not sign", func(t *testing.T) {
		devClient, _ := client.New(m.URL, s.devices(t).credential("laptop-1"))
		up, err := devClient.NewUpdater(client.UpdaterConfig{TrustedRoot: pinned, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		check := func() (client.Offer, error) {
			r, err := devClient.CheckIn(ctx, client.CheckInRequest{DeviceID: "laptop-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
			if err != nil || len(r.Offers) != 1 {
				t.Fatalf("check-in: %+v, %v", r, err)
			}
			return r.Offers[0], nil
		}
		if _, err := s.admin.Deploy(ctx, "agent", "2.0"); err != nil {
			t.Fatal(err)
		}
		offer, _ := check()
		files, err := up.Fetch(ctx, offer, t.TempDir())
		if err != nil || len(files) != 1 {
			t.Fatalf("legitimate offer: %v", err)
		}
		if b, _ := os.ReadFile(files[0]); !bytes.Equal(b, want2) {
			t.Fatal("the fetched payload differs")
		}
		// A compromised server (or mirror) offers other bytes.
		evil := bytes.Repeat([]byte("x"), 4096)
		sum := sha256.Sum256(evil)
		offer.Payloads[0].SHA256, offer.Payloads[0].Size = hex.EncodeToString(sum[:]), int64(len(evil))
		dir := t.TempDir()
		if _, err := up.Fetch(ctx, offer, dir); err == nil || !strings.Contains(err.Error(), "differs from the signed target") {
			t.Fatalf("forged offer: %v", err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("a refused payload left files: %v", entries)
		}
	})

	// Rotations: the device keeps working, with nothing but its pinned root.
	res, err := s.admin.RotateOnlineKeys(ctx, "scheduled rotation")
	if err != nil || !res.Applied {
		t.Fatalf("online rotation: %+v, %v", res, err)
	}
	if got, err := dev.fetch(m.URL, "agent/2.0/payload.bin"); err != nil || !bytes.Equal(got, want2) {
		t.Fatalf("after online-key rotation: %v", err)
	}
	// Move the root offline: two new keys, threshold two, signed by the old
	// root key (kept on the server until now) and both new keys.
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token, "RINGMASTER_KEY_PASSPHRASE": "correct horse battery staple"}
	off := t.TempDir()
	k1, k2, draft := filepath.Join(off, "root-1.key"), filepath.Join(off, "root-2.key"), filepath.Join(off, "root.json")
	for _, args := range [][]string{
		{"keys", "generate", k1}, {"keys", "generate", k2},
		{"keys", "root", "draft", "--out", draft, "--root-key", k1, "--root-key", k2, "--threshold", "2"},
		{"keys", "root", "sign", draft, "--key", filepath.Join(s.data, "keys", serverRootKey(t, s)+".key"),
			"--passphrase-file", filepath.Join(s.data, "keys.passphrase")},
		{"keys", "root", "sign", draft, "--key", k1},
		{"keys", "root", "sign", draft, "--key", k2},
		{"keys", "root", "push", draft, "--reason", "root goes offline"},
	} {
		if out, err := run(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if got, err := dev.fetch(m.URL, "agent/2.0/payload.bin"); err != nil || !bytes.Equal(got, want2) {
		t.Fatalf("after root rotation: %v", err)
	}
	// With the root offline, an online rotation needs the offline keys.
	draft2 := filepath.Join(off, "root-next.json")
	out, err := run(t, env, "keys", "rotate-online", "--reason", "suspected leak", "--out", draft2)
	if err != nil || !strings.Contains(out, "draft root version") {
		t.Fatalf("rotate-online with an offline root: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"keys", "root", "sign", draft2, "--key", k1}, {"keys", "root", "sign", draft2, "--key", k2},
		{"keys", "root", "push", draft2, "--reason", "suspected leak"}} {
		if out, err := run(t, env, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	want3, _ := publishFile(t, s, "agent", "3.0")
	if got, err := dev.fetch(m.URL, "agent/3.0/payload.bin"); err != nil || !bytes.Equal(got, want3) {
		t.Fatalf("after the offline-signed online rotation: %v", err)
	}
	fresh := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
	if got, err := fresh.fetch(m.URL, "agent/1.0/payload.bin"); err != nil || !bytes.Equal(got, want1) {
		t.Fatalf("a device pinned to root v1 walks the root chain: %v", err)
	}
	if out, _ := run(t, env, "keys", "status"); !strings.Contains(out, "root") || !strings.Contains(out, "timestamp") {
		t.Fatalf("keys status:\n%s", out)
	}
	es, err := s.admin.Audit(ctx, client.AuditFilter{Action: "tuf.*"})
	if err != nil || len(es) != 4 { // init, rotate_online, root, root (the offline-signed rotation)
		t.Fatalf("TUF audit entries: %d, %v", len(es), err)
	}
}

// TestTUFFreeze: a mirror that freezes the metadata is caught once the
// frozen timestamp expires, while the server re-signs its own timestamp
// before expiry, so an honest path keeps working.
func TestTUFFreeze(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) {
		c.TUF.TimestampTTL = 3 * time.Second
		c.TUF.Refresh = 500 * time.Millisecond
	})
	pinned := mustGet(t, s.url+"/v1/tuf/root.json")
	want, _ := publishFile(t, s, "agent", "1.0")
	m := newMirror(t, s.url)
	dev := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
	if _, err := dev.fetch(m.URL, "agent/1.0/payload.bin"); err != nil {
		t.Fatal(err)
	}
	frozen := m.recorded("/v1/tuf/timestamp.json")
	m.set(func(p string, b []byte) []byte {
		if p == "/v1/tuf/timestamp.json" {
			return frozen
		}
		return b
	})
	time.Sleep(3500 * time.Millisecond)
	_, err := dev.refresh(m.URL)
	wantErr(t, "frozen timestamp", err, &metadata.ErrExpiredMetadata{})
	m.honest()
	if got, err := dev.fetch(m.URL, "agent/1.0/payload.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("honest path after the freeze: %v", err)
	}
}

func serverRootKey(t *testing.T, s *server) string {
	t.Helper()
	root, err := metadata.Root().FromBytes(mustGet(t, s.url+"/v1/tuf/root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return root.Signed.Roles[tuf.Root].KeyIDs[0]
}

// TestWithdrawUpdate: withdrawing a published update stops its offers,
// cancels its deployment, and removes it from the signed TUF targets, so a
// stock go-tuf client that fetched it before can no longer; another
// release's target still verifies, and the withdrawal is audited.
func TestWithdrawUpdate(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	pinned := mustGet(t, s.url+"/v1/tuf/root.json")
	want, bad := publishFile(t, s, "agent", "1.0")
	publishFile(t, s, "agent", "0.9")
	d, err := s.admin.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dev := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
	if got, err := dev.fetch(s.url, "agent/1.0/payload.bin"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetching 1.0 before the withdrawal: %v", err)
	}
	offers := func() int {
		var r client.CheckInResponse
		waitFor(t, 30*time.Second, func() bool {
			r, err = s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "0.9"}}})
			return err == nil
		})
		return len(r.Offers)
	}
	waitFor(t, 30*time.Second, func() bool { return offers() == 1 })

	if _, err := s.admin.Withdraw(ctx, bad.ID, ""); !client.IsKind(err, "invalid") {
		t.Fatalf("withdrawing without a reason: %v", err)
	}
	u, err := s.admin.Withdraw(ctx, bad.ID, "boot loop on contoso")
	if err != nil || u.State != "withdrawn" || u.WithdrawReason != "boot loop on contoso" || u.WithdrawnAt == nil {
		t.Fatalf("withdraw: %+v, %v", u, err)
	}
	// No more offers, at once (the call returns after the snapshot is rebuilt).
	if n := offers(); n != 0 {
		t.Fatalf("%d offers of a withdrawn update", n)
	}
	if d, _ = s.admin.Deployment(ctx, d.ID); d.State != "cancelled" || !strings.Contains(d.Reason, "update withdrawn: boot loop on contoso") {
		t.Fatalf("its deployment after the withdrawal: %+v", d)
	}
	// The signed targets no longer list it: the same device's client
	// refreshes and cannot fetch it; 0.9 still verifies.
	if _, err := dev.fetch(s.url, "agent/1.0/payload.bin"); err == nil {
		t.Fatal("a stock TUF client fetched a withdrawn target")
	}
	if _, err := dev.fetch(s.url, "agent/0.9/payload.bin"); err != nil {
		t.Fatalf("fetching 0.9 after 1.0's withdrawal: %v", err)
	}
	// Withdrawn updates cannot be deployed; withdrawing again changes nothing.
	if _, err := s.admin.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 100}}}); !client.IsKind(err, "conflict") {
		t.Fatalf("deploying a withdrawn update: %v", err)
	}
	if again, err := s.admin.Withdraw(ctx, bad.ID, "again"); err != nil || again.WithdrawReason != "boot loop on contoso" {
		t.Fatalf("withdrawing twice: %+v, %v", again, err)
	}
	es, _ := s.admin.Audit(ctx, client.AuditFilter{Action: "update.withdraw"})
	if len(es) != 1 || es[0].Target != bad.ID || es[0].Reason != "boot loop on contoso" {
		t.Fatalf("withdrawal audit entries: %+v", es)
	}
}

// TestDeleteUpdate: a published update never deployed can be deleted; it
// leaves the signed TUF targets and its version can be declared again. A
// deployed one cannot (withdraw it instead); nor can a ring a plan names.
func TestDeleteUpdate(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	pinned := mustGet(t, s.url+"/v1/tuf/root.json")
	_, unused := publishFile(t, s, "agent", "1.0")
	_, deployed := publishFile(t, s, "agent", "1.1")
	dev := &stockClient{t: t, dir: t.TempDir(), pinned: pinned}
	if _, err := dev.fetch(s.url, "agent/1.0/payload.bin"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"canary", "spare"} {
		if _, err := s.admin.PutRing(ctx, client.Ring{Name: r, Rule: "true"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.admin.DeployPlan(ctx, "agent", "1.1", client.Plan{Ring: "canary", Waves: []client.Wave{{Percent: 100}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.DeleteUpdate(ctx, deployed.ID); !client.IsKind(err, "conflict") || !strings.Contains(err.Error(), "withdraw it instead") {
		t.Fatalf("deleting a deployed update: %v", err)
	}
	if err := s.admin.DeleteUpdate(ctx, unused.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.admin.Update(ctx, unused.ID); !client.IsKind(err, "not-found") {
		t.Fatalf("a deleted update: %v", err)
	}
	if _, err := dev.fetch(s.url, "agent/1.0/payload.bin"); err == nil {
		t.Fatal("a stock TUF client fetched a deleted update's target")
	}
	if _, err := dev.fetch(s.url, "agent/1.1/payload.bin"); err != nil {
		t.Fatalf("another release after the delete: %v", err)
	}
	if again, _ := publishFile(t, s, "agent", "1.0"); len(again) == 0 {
		t.Fatal("republishing a deleted version")
	}
	if err := s.admin.DeleteRing(ctx, "canary"); !client.IsKind(err, "conflict") {
		t.Fatalf("deleting a ring a deployment names: %v", err)
	}
	if err := s.admin.DeleteRing(ctx, "spare"); err != nil {
		t.Fatal(err)
	}
	if rs, _ := s.admin.Rings(ctx); len(rs) != 1 || rs[0].Name != "canary" {
		t.Fatalf("rings after deleting spare: %+v", rs)
	}
}
