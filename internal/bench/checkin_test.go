package bench

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// TestRunCheckinSmoke runs a tiny benchmark so the command keeps working; it
// asserts that both sides were measured, never how fast they were.
func TestRunCheckinSmoke(t *testing.T) {
	rep, err := RunCheckin(context.Background(), CheckinConfig{
		Devices: 200, Concurrency: 4, Duration: 300 * time.Millisecond, Rounds: 1, Products: 5, Versions: 4, Deployments: 20, Holds: 3, Seed: 1,
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
	// The baseline answers with a body of the same size.
	if d := rep.Baseline.BytesPerResp - rep.Ringmaster.BytesPerResp; d > 50 || d < -50 {
		t.Fatalf("baseline body %.0f bytes vs ringmaster %.0f", rep.Baseline.BytesPerResp, rep.Ringmaster.BytesPerResp)
	}
}

// TestRunEventsSmoke runs a tiny ingestion benchmark: both sides measured,
// every aggregated event counted.
func TestRunEventsSmoke(t *testing.T) {
	rep, err := RunEvents(context.Background(), EventsConfig{CheckinConfig: CheckinConfig{
		Devices: 200, Concurrency: 2, Duration: 300 * time.Millisecond, Rounds: 1, Products: 2, Versions: 2, Deployments: 2, Seed: 1,
	}, BatchSize: 20, Aggregate: 500}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Result{rep.Baseline, rep.Ringmaster} {
		if r.Requests == 0 || r.Errors != 0 || r.P99 < r.P50 {
			t.Fatalf("%s: %+v", r.Name, r)
		}
	}
	if rep.AggregateEvents != 500 || rep.AggregatedPerSecond <= 0 {
		t.Fatalf("aggregation: %+v", rep)
	}
}
