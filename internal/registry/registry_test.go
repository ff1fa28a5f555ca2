package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// batches is a Writer that keeps what it is given (the store's side is
// tested against real databases in package store).
type batches struct {
	mu  sync.Mutex
	got [][]Seen
}

func (b *batches) RecordSightings(_ context.Context, batch []Seen) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, append([]Seen(nil), batch...))
	return nil
}

func TestRecorderCoalescesAndFlushesOnStop(t *testing.T) {
	w := &batches{}
	r := NewRecorder(w, slog.New(slog.DiscardHandler), 100, time.Hour)
	t0 := time.Now()
	r.Record(Seen{DeviceID: "a", Attributes: map[string]string{"v": "1"}, At: t0})
	r.Record(Seen{DeviceID: "a", Attributes: map[string]string{"v": "2"}, At: t0.Add(time.Second)})
	r.Record(Seen{DeviceID: "b", At: t0})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	cancel() // the hourly tick never comes: the stop must flush
	<-done
	if len(w.got) != 1 || len(w.got[0]) != 2 {
		t.Fatalf("batches = %+v; want one batch of two devices", w.got)
	}
	for _, s := range w.got[0] {
		if s.DeviceID == "a" && (s.CheckIns != 2 || s.Attributes["v"] != "2") {
			t.Fatalf("device a = %+v; want 2 check-ins and the latest attributes", s)
		}
	}
	if r.Written() != 2 {
		t.Fatalf("Written = %d", r.Written())
	}
}

func TestRecorderDropsWhenFullInsteadOfBlocking(t *testing.T) {
	r := NewRecorder(&batches{}, slog.New(slog.DiscardHandler), 2, time.Hour)
	for i := 0; i < 5; i++ {
		r.Record(Seen{DeviceID: "x"})
	}
	if r.Dropped() != 3 {
		t.Fatalf("Dropped = %d, want 3", r.Dropped())
	}
}

// failing is a Writer that fails while fail is set.
type failing struct {
	batches
	fail bool
}

func (f *failing) RecordSightings(ctx context.Context, batch []Seen) error {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return context.DeadlineExceeded
	}
	return f.batches.RecordSightings(ctx, batch)
}

// TestRecorderWritesEachOfferOnce: a device offered the same deployment at
// every check-in has that offer written once (the earliest); an offer in a
// batch that failed to write is written with the next check-in.
func TestRecorderWritesEachOfferOnce(t *testing.T) {
	w := &failing{}
	r := NewRecorder(w, slog.New(slog.DiscardHandler), 5000, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	t0 := time.Now()
	offer := func(dep string, wave int, at time.Time) []Offer {
		return []Offer{{DeploymentID: dep, Wave: wave, At: at}}
	}
	wait := func() {
		t.Helper()
		select {
		case <-r.Flushed():
		case <-time.After(10 * time.Second):
			t.Fatal("no flush")
		}
	}
	// The ticker is hourly: a batch is flushed by filling it.
	flushNow := func(seen ...Seen) {
		for _, s := range seen {
			r.Record(s)
		}
		for i := len(seen); i < r.maxBatch; i++ {
			r.Record(Seen{DeviceID: fmt.Sprintf("filler-%d", i)})
		}
		wait()
	}
	offersOf := func(b []Seen, id string) []Offer {
		for _, s := range b {
			if s.DeviceID == id {
				return s.Offers
			}
		}
		return nil
	}
	r.in <- Seen{DeviceID: "d", At: t0, Offers: offer("dep_a", 0, t0)}
	flushNow(Seen{DeviceID: "d", At: t0.Add(time.Minute), Offers: offer("dep_a", 1, t0.Add(time.Minute))})
	if got := offersOf(w.got[0], "d"); len(got) != 1 || got[0].Wave != 0 || !got[0].At.Equal(t0) {
		t.Fatalf("first batch offers of d = %+v; want the earliest offer", got)
	}
	flushNow(Seen{DeviceID: "d", At: t0.Add(2 * time.Minute), Offers: offer("dep_a", 1, t0.Add(2*time.Minute))})
	if got := offersOf(w.got[1], "d"); len(got) != 0 {
		t.Fatalf("an offer written before was written again: %+v", got)
	}
	w.mu.Lock()
	w.fail = true
	w.mu.Unlock()
	flushNow(Seen{DeviceID: "e", At: t0, Offers: offer("dep_a", 0, t0)})
	w.mu.Lock()
	w.fail = false
	w.mu.Unlock()
	flushNow(Seen{DeviceID: "e", At: t0.Add(time.Hour), Offers: offer("dep_a", 0, t0.Add(time.Hour))})
	if got := offersOf(w.got[2], "e"); len(got) != 1 {
		t.Fatalf("an offer whose write failed was not written again: %+v", got)
	}
}
