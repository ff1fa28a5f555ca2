package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

func installEvents(u client.Update, n int, prefix string, failEvery int) []client.DeviceEvent {
	var out []client.DeviceEvent
	for i := 0; i < n; i++ {
		typ := "install_succeeded"
		if failEvery > 0 && i%failEvery == 0 {
			typ = "install_failed"
		}
		out = append(out, client.DeviceEvent{EventID: fmt.Sprintf("%s-%d", prefix, i), DeviceID: fmt.Sprintf("dev-%03d", i),
			UpdateID: u.ID, Type: typ, Time: time.Now().Add(-time.Minute).UTC(),
			Attributes: map[string]string{"oem": []string{"contoso", "fabrikam"}[i%2]}})
	}
	return out
}

func waitHealth(t *testing.T, c *client.Client, depID string, succeeded, failed int64) client.Health {
	t.Helper()
	var h client.Health
	waitFor(t, 60*time.Second, func() bool {
		var err error
		h, err = c.DeploymentHealth(context.Background(), depID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == succeeded && h.Health.Overall.Devices["install_failed"] == failed
	})
	return h
}

// TestDeviceEvents: per-event answers, events through the embedded NATS
// log into health counts, duplicates and resends counted once.
func TestDeviceEvents(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	u := publishSmall(t, s, "agent", "2.0")
	d, err := s.admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	batch := installEvents(u, 40, "e", 4) // 10 failures, 30 successes
	// Without a credential the events are valid but never counted.
	resp, err := s.device.SendEvents(ctx, batch)
	if err != nil || resp.Accepted != 0 || resp.Unauthenticated != 40 || resp.Results[0].Status != "unauthenticated" {
		t.Fatalf("unauthenticated answer = %+v, %v", resp, err)
	}
	// One device's batch: each event is answered on its own.
	bad := client.DeviceEvent{EventID: "bad-1", DeviceID: "dev-000", UpdateID: u.ID, Type: "exploded", Time: time.Now()}
	cited, err := s.devices(t).cite(ctx, "dev-000", []client.DeviceEvent{batch[0], bad, batch[0]})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = s.devices(t).device("dev-000").SendEvents(ctx, cited)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Accepted != 1 || resp.Rejected != 2 || resp.Results[1].Status != "rejected" || resp.Results[2].Status != "rejected" {
		t.Fatalf("answer = %+v", resp)
	}
	if resp, err = s.devices(t).send(ctx, batch[1:]); err != nil || resp.Accepted != 39 {
		t.Fatalf("fleet answer = %+v, %v", resp, err)
	}
	h := waitHealth(t, s.admin, d.ID, 30, 10)
	if f := h.Health.Overall.Failure; f.Events != 10 || f.Of != 40 || f.Low >= 0.25 || f.High <= 0.25 {
		t.Fatalf("failure rate %+v", f)
	}
	var contoso bool
	for _, c := range h.Health.Cells {
		contoso = contoso || (c.Cell == "oem=contoso" && c.Failure.Events == 10)
	}
	if !contoso {
		t.Fatalf("cells = %+v", h.Health.Cells)
	}
	// The same events again, and the same devices under new event ids:
	// nothing more is counted.
	s.devices(t).send(ctx, batch)
	s.devices(t).send(ctx, installEvents(u, 40, "again", 4))
	more := installEvents(u, 1, "late", 0)
	more[0].DeviceID = "dev-new"
	s.devices(t).send(ctx, more)
	waitHealth(t, s.admin, d.ID, 31, 10)
	out, err := run(t, map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}, "health", d.ID)
	if err != nil || !strings.Contains(out, "24.39% [13.83, 39.34] (10/41)") || !strings.Contains(out, "oem=contoso") {
		t.Fatalf("health CLI: %v\n%s", err, out)
	}
}

// TestKillDuringAggregation kills the server after a batch's counts are
// committed but before it is acked; after a restart the redelivered batch
// counts nothing twice.
func TestKillDuringAggregation(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	data := t.TempDir()
	c := startChild(t, data, "", "RINGMASTER_FAILPOINT=aggregate-committed")
	admin := adminClient(t, c.url, data)
	ctx := context.Background()
	path, _ := writeRandomFile(t, 256)
	u, err := admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := newFleet(t, c.url, admin).send(ctx, installEvents(u, 50, "e", 5)); err != nil || r.Accepted != 50 {
		t.Fatalf("send: %+v, %v", r, err)
	}
	waitFile(t, filepath.Join(data, "failpoint-aggregate-committed"))
	c.kill9(t)
	os.Remove(filepath.Join(data, "failpoint-aggregate-committed"))

	c = startChild(t, data, "")
	admin = adminClient(t, c.url, data)
	waitHealth(t, admin, d.ID, 40, 10)
	// Give the redelivery time to happen, then check nothing moved.
	time.Sleep(3 * time.Second)
	h, err := admin.DeploymentHealth(ctx, d.ID)
	if err != nil || h.Health.Overall.Devices["install_succeeded"] != 40 || h.Health.Overall.Devices["install_failed"] != 10 {
		t.Fatalf("after redelivery: %+v, %v", h.Health.Overall, err)
	}
	c.stop(t)
	var seen int
	if err := openDB(t, data, "").QueryRow(`SELECT COUNT(*) FROM seen_events`).Scan(&seen); err != nil || seen != 50 {
		t.Fatalf("seen events = %d, %v", seen, err)
	}
}
