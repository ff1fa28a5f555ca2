package registry

import (
	"context"
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
