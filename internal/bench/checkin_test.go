package bench

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/dbtest"
)

// TestRunCheckinSmoke runs a tiny benchmark in each protocol so the
// command keeps working; it asserts that both sides were measured, never
// how fast they were.
func TestRunCheckinSmoke(t *testing.T) {
	for _, protocol := range []string{"native", "omaha"} {
		t.Run(protocol, func(t *testing.T) {
			rep, err := RunCheckin(context.Background(), CheckinConfig{
				Devices: 200, Concurrency: 4, Duration: 300 * time.Millisecond, Rounds: 1, Products: 5, Versions: 4, Deployments: 20, Holds: 3, Seed: 1,
				Protocol: protocol,
			}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []Result{rep.Baseline, rep.Ringmaster} {
				if r.Requests == 0 || r.Errors != 0 || r.P50 <= 0 || r.P99 < r.P50 || r.P999 < r.P99 {
					t.Fatalf("%s: %+v", r.Name, r)
				}
			}
			if rep.Ringmaster.OffersPerReq <= 0 {
				t.Fatalf("devices were offered nothing: %+v", rep.Ringmaster)
			}
			// The baseline answers with a body the size of Ringmaster's mean
			// answer over the fleet. (The run's own mean is over the devices
			// it reached: on a loaded machine a short phase reaches only
			// some, so it is only bounded by the sizes the probe saw.)
			if d := rep.Baseline.BytesPerResp - rep.ProbeBytes; d > 1 || d < -1 {
				t.Fatalf("baseline body %.0f bytes vs Ringmaster's mean answer %.0f", rep.Baseline.BytesPerResp, rep.ProbeBytes)
			}
			if b := rep.Ringmaster.BytesPerResp; b < float64(rep.ProbeMin) || b > float64(rep.ProbeMax) {
				t.Fatalf("Ringmaster answered %.0f bytes on average, outside the probe's %d-%d", b, rep.ProbeMin, rep.ProbeMax)
			}
		})
	}
}

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// TestRunEventsSmoke runs a tiny ingestion benchmark on each engine: both
// sides measured, every aggregated event counted in that engine.
func TestRunEventsSmoke(t *testing.T) {
	for _, be := range dbtest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			// Devices enough that the end-to-end phase's fresh batches have
			// outcomes never counted, however fast the earlier phases ran:
			// 200 devices had 2,000 outcomes, all counted by then on a fast
			// machine.
			cfg := EventsConfig{CheckinConfig: CheckinConfig{
				Devices: 100000, Concurrency: 2, Duration: 300 * time.Millisecond, Rounds: 1, Products: 2, Versions: 2, Deployments: 2, Seed: 1,
			}, BatchSize: 20, Aggregate: 500}
			if be.Name == "postgres" {
				cfg.Database = be.DSN(t) // the benchmark makes its own database on that server
			}
			rep, err := RunEvents(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []Result{rep.Baseline, rep.Ringmaster} {
				if r.Requests == 0 || r.Errors != 0 || r.P99 < r.P50 {
					t.Fatalf("%s: %+v", r.Name, r)
				}
			}
			if rep.AggregateEvents != 500 || rep.AggregatedPerSecond <= 0 || rep.CountedToAccepted <= 0 || rep.AllocsPerEvent <= 0 {
				t.Fatalf("aggregation: %+v", rep)
			}
			// At once, every accepted event is counted, and no faster than
			// it was accepted (the count's clock runs on past the posts).
			if e := rep.EndToEnd; e.Accepted == 0 || e.Counted == 0 || e.Counted > e.Accepted ||
				e.CountedToAccepted <= 0 || e.CountedToAccepted > 1 || e.DrainSeconds < 0 ||
				e.AcceptRatio <= 0 || e.AcceptRatio >= 1 {
				t.Fatalf("end to end: %+v", e)
			}
			if rep.Engine != be.Name {
				t.Fatalf("counted in %s, want %s", rep.Engine, be.Name)
			}
			// The backlog series ends with everything published counted.
			if n := len(rep.Lag); n == 0 || rep.Lag[n-1].Published != 500 || rep.Lag[n-1].Backlog() > 0 {
				t.Fatalf("lag series: %+v", rep.Lag)
			}
		})
	}
}

// TestDriveOnce: a phase of fresh bodies sends each exactly once and ends
// when they run out, well before the minute it was to last.
func TestDriveOnce(t *testing.T) {
	url, stop, err := startBaseline(baselineBody(64))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	bodies := make([]request, 7)
	for i := range bodies {
		bodies[i] = request{body: []byte(`{"events":[]}`)}
	}
	cfg := CheckinConfig{Concurrency: 3, Duration: time.Minute, once: true}
	var r Result
	if err := drive(context.Background(), &http.Client{}, []string{url + "/v1/device/events"}, bodies, cfg, &r); err != nil {
		t.Fatal(err)
	}
	if r.Requests != int64(len(bodies)) || r.Errors != 0 {
		// Without once it would cycle through them for the whole minute.
		t.Fatalf("sent %d requests (%d errors), want each of %d bodies once", r.Requests, r.Errors, len(bodies))
	}
}
