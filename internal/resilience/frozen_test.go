package resilience

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
)

// TestFrozenDatabase: with PostgreSQL hung (a proxy that holds every
// connection and moves no bytes), admin requests fail fast with an
// "unavailable" problem that says why, while devices keep checking in,
// are offered the release, verify it against the signed TUF metadata and
// download it; when the database comes back, so does the admin API.
func TestFrozenDatabase(t *testing.T) {
	ctx := context.Background()
	fz, dsn := dbtest.Freeze(t, dbtest.Postgres(t))
	s := apptest.Start(t, dsn, func(c *config.Config) { c.AdminTimeout = 2 * time.Second })
	payload := make([]byte, 64<<10)
	rand.Read(payload)
	file := filepath.Join(t.TempDir(), "agent.bin")
	if err := os.WriteFile(file, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	dep, err := s.Admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL + "/v1/tuf/root.json")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	device, _ := client.New(s.URL, s.DeviceCredential("dev-1"))
	checkIn := func() (client.CheckInResponse, error) {
		return device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
	}
	if r, err := checkIn(); err != nil || len(r.Offers) != 1 {
		t.Fatalf("check-in before the freeze: %+v, %v", r, err)
	}

	fz.Set(true)
	_, err = s.Admin.Updates(ctx, "")
	if !client.IsKind(err, "unavailable") || !strings.Contains(err.Error(), "admin_timeout") {
		t.Fatalf("an admin request against a hung database: %v", err)
	}
	r, err := checkIn()
	if err != nil || len(r.Offers) != 1 {
		t.Fatalf("check-in with the database hung: %+v, %v", r, err)
	}
	up, err := device.NewUpdater(client.UpdaterConfig{TrustedRoot: root, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	paths, err := up.Fetch(ctx, r.Offers[0], t.TempDir())
	if err != nil || len(paths) != 1 {
		t.Fatalf("verifying and downloading the offer with the database hung: %v", err)
	}
	// Its report is accepted into the event log meanwhile...
	ev := r.Offers[0].Event("dev-1-installed", "dev-1", "install_succeeded", time.Now().UTC())
	if res, err := device.SendEvents(ctx, []client.DeviceEvent{ev}); err != nil || res.Accepted != 1 {
		t.Fatalf("an event with the database hung: %+v, %v", res, err)
	}

	// ...and counted, once, when the database is back.
	fz.Set(false)
	apptest.WaitFor(t, time.Minute, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Failure.Of == 1
	})
	// A repeat of it counts nothing: once another device's report, sent
	// after it through the same log, is counted, the total is two.
	if res, err := device.SendEvents(ctx, []client.DeviceEvent{ev}); err != nil || res.Accepted != 1 {
		t.Fatalf("the same event again: %+v, %v", res, err)
	}
	other, _ := client.New(s.URL, s.DeviceCredential("dev-2"))
	r2, err := other.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-2", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
	if err != nil || len(r2.Offers) != 1 {
		t.Fatalf("dev-2 check-in: %+v, %v", r2, err)
	}
	if _, err := other.SendEvents(ctx, []client.DeviceEvent{r2.Offers[0].Event("dev-2-installed", "dev-2", "install_succeeded", time.Now().UTC())}); err != nil {
		t.Fatal(err)
	}
	var h client.Health
	apptest.WaitFor(t, time.Minute, func() bool {
		h, err = s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Failure.Of >= 2
	})
	if h.Health.Overall.Failure.Of != 2 || h.Health.Overall.Failure.Events != 0 {
		t.Fatalf("health after the database came back: %+v", h.Health.Overall)
	}
}

// TestUploadAcrossFreeze: the last byte of an upload arrives while the
// database is hung, so the server cannot record it (a fast 503 that says
// why); once the database is back, the SDK's resumable upload has nothing
// left to send and the publish goes through, without sending the file again.
func TestUploadAcrossFreeze(t *testing.T) {
	ctx := context.Background()
	fz, dsn := dbtest.Freeze(t, dbtest.Postgres(t))
	s := apptest.Start(t, dsn, func(c *config.Config) { c.AdminTimeout = 2 * time.Second })
	payload := make([]byte, 256<<10)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "agent"}); err != nil {
		t.Fatal(err)
	}
	u, err := s.Admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "3.0",
		Payloads: []client.NewPayload{{Name: "agent.bin", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(payload))}}})
	if err != nil {
		t.Fatal(err)
	}
	// The second half streams slowly: the database hangs after the server
	// has accepted the request and before the last byte arrives.
	half := len(payload) / 2
	staged := filepath.Join(s.Data, "content", "staging", u.ID, u.Payloads[0].SHA256+".part")
	body, w := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, s.URL+u.Payloads[0].UploadURL, body)
	req.ContentLength = int64(len(payload))
	req.Header.Set("Authorization", "Bearer "+s.Token)
	done := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		res.Body.Close()
		done <- res
	}()
	if _, err := w.Write(payload[:half]); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, time.Minute, func() bool {
		fi, err := os.Stat(staged)
		return err == nil && fi.Size() > 0
	})
	fz.Set(true)
	if _, err := w.Write(payload[half:]); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if res := <-done; res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("an upload whose last byte arrived with the database hung: %v", res)
	}
	fz.Set(false)

	// Every byte is there: the resumable upload has nothing left to send.
	apptest.WaitFor(t, time.Minute, func() bool {
		req, _ := http.NewRequest(http.MethodHead, s.URL+u.Payloads[0].UploadURL, nil)
		req.Header.Set("Authorization", "Bearer "+s.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK && res.Header.Get("Upload-Offset") == fmt.Sprint(len(payload))
	})
	if _, err := s.Admin.Publish(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if pub, err := s.Admin.WaitPublished(ctx, u.ID, 50*time.Millisecond); err != nil || pub.State != "published" {
		t.Fatalf("publishing after the database came back: %+v, %v", pub, err)
	}
}
