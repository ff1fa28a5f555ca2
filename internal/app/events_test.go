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

// TestKillDuringAggregation kills the server while it counts a batch of
// events, on both engines: after the batch's counts are committed but
// before the stream is acked (the batch is redelivered and counts nothing
// twice), and mid-batch inside the transaction, with part of the batch
// written (nothing of it is committed; the redelivered batch counts whole).
func TestKillDuringAggregation(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: skipped with -short")
	}
	for _, tc := range []struct{ backend, failpoint string }{
		{"sqlite", "aggregate-committed"},
		{"sqlite", "aggregate-uncommitted"},
		{"postgres", "aggregate-committed"},
		{"postgres", "aggregate-uncommitted"},
	} {
		t.Run(tc.backend+"/"+tc.failpoint, func(t *testing.T) {
			t.Parallel()
			data, dsn := t.TempDir(), childDatabase(t, tc.backend)
			c := startChild(t, data, dsn, "RINGMASTER_FAILPOINT="+tc.failpoint)
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
			// Every device enrolls and is offered the update first: sending
			// then needs no database, which the failpoint may hold.
			fleet := newFleet(t, c.url, admin)
			cited, err := fleet.citeAll(ctx, installEvents(u, 50, "e", 5))
			if err != nil {
				t.Fatal(err)
			}
			if r, err := fleet.sendUncited(ctx, cited); err != nil || r.Accepted != 50 {
				t.Fatalf("send: %+v, %v", r, err)
			}
			waitFile(t, filepath.Join(data, "failpoint-"+tc.failpoint))
			c.kill9(t)
			os.Remove(filepath.Join(data, "failpoint-"+tc.failpoint))

			c = startChild(t, data, dsn)
			admin = adminClient(t, c.url, data)
			// Nothing was acked before the kill, so all 50 events pass
			// through the new server: the batch that reached the failpoint
			// comes back, counted whole if nothing of it was committed and
			// as repeats if all of it was, and the events behind it are
			// counted.
			var agg map[string]int
			waitFor(t, 90*time.Second, func() bool {
				agg = aggregated(t, c.url)
				return agg["processed"] >= 50
			})
			if agg["processed"] != 50 || agg["counted"]+agg["repeat"] != 50 ||
				tc.failpoint == "aggregate-committed" && agg["repeat"] == 0 ||
				tc.failpoint == "aggregate-uncommitted" && agg["counted"] != 50 {
				t.Fatalf("after the restart the aggregator %v", agg)
			}
			h, err := admin.DeploymentHealth(ctx, d.ID)
			if err != nil || h.Health.Overall.Devices["install_succeeded"] != 40 || h.Health.Overall.Devices["install_failed"] != 10 {
				t.Fatalf("after redelivery: %+v, %v", h.Health.Overall, err)
			}
			var contoso int64
			for _, cell := range h.Health.Cells {
				if cell.Cell == "oem=contoso" {
					contoso = cell.Devices["install_failed"] + cell.Devices["install_succeeded"]
				}
			}
			if contoso != 25 {
				t.Fatalf("oem=contoso counted %d devices, want 25: %+v", contoso, h.Health.Cells)
			}
			c.stop(t)
			db := openDB(t, data, dsn)
			for query, want := range map[string]int{
				`SELECT COUNT(*) FROM device_outcomes`: 50,
				`SELECT COUNT(*) FROM offers`:          50,
			} {
				var n int
				if err := db.QueryRow(query).Scan(&n); err != nil || n != want {
					t.Errorf("%s = %d (%v), want %d", query, n, err, want)
				}
			}
		})
	}
}

// aggregated reads ringmaster_aggregated_events_total by result from a
// server's metrics.
func aggregated(t *testing.T, url string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(string(mustGet(t, url+"/metrics")), "\n") {
		var result string
		var n int
		if rest, ok := strings.CutPrefix(line, `ringmaster_aggregated_events_total{result="`); ok {
			if i := strings.Index(rest, `"} `); i > 0 {
				result = rest[:i]
				fmt.Sscan(rest[i+3:], &n)
				out[result] = n
			}
		}
	}
	return out
}
