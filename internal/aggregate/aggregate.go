// Package aggregate consumes the device event log into the health counters,
// exactly once per device, outcome, wave and cohort cell.
package aggregate

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/eventlog"
	"github.com/ringmaster/ringmaster/internal/failpoint"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Aggregator consumes the event log into the store's counters.
type Aggregator struct {
	Log    *eventlog.Log
	Store  *store.Store
	Cohort store.Cohort
	Batch  int
	// Workers is how many batches are counted at once (at least one). On
	// SQLite, a single writer, one; on PostgreSQL more keep the server busy
	// while each waits on its own transaction.
	Workers    int
	AckWait    time.Duration
	Logger     *slog.Logger
	Failpoints failpoint.Set

	mu    sync.Mutex
	stats Stats // since start, a batch at a time: the outcomes add up to Processed
}

// durable is the aggregator's consumer of the event log.
const durable = "health-aggregator"

// Backlog is how many event log messages (each of many events) the
// aggregator has not yet counted.
func (a *Aggregator) Backlog(ctx context.Context) (int64, error) {
	return a.Log.Backlog(ctx, durable)
}

// Run consumes until ctx ends. Each batch commits its counts before it is
// acked; a batch redelivered after a crash counts nothing twice. When the
// event log cannot be consumed (a cluster still electing the stream's
// leader at start, say), it says so and tries again, with backoff: an
// aggregator that gave up would leave every gate judging nothing.
func (a *Aggregator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range max(1, a.Workers) {
		wg.Go(func() { a.run(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

// run is one worker: it consumes until ctx ends.
func (a *Aggregator) run(ctx context.Context) {
	wait := time.Second
	for {
		err := a.consume(ctx)
		if ctx.Err() != nil {
			return
		}
		a.Logger.Warn("the health aggregator cannot consume the event log; trying again", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (a *Aggregator) consume(ctx context.Context) error {
	return a.Log.Consume(ctx, durable, a.Batch, a.AckWait, func(ctx context.Context, events []telemetry.Event) error {
		t, err := a.Store.RecordEvents(ctx, events, a.Cohort)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.stats.Processed += int64(len(events))
		a.stats.Counted += int64(t.Counted)
		a.stats.Repeats += int64(t.Repeats)
		a.stats.Duplicates += int64(t.Duplicates)
		a.stats.Unattributed += int64(t.Unattributed)
		a.mu.Unlock()
		return a.Failpoints.Reach(ctx, "aggregate-committed")
	})
}

// Stats are the events an aggregator processed since start, and what
// became of them (as store.Tally says).
type Stats struct {
	Processed, Counted, Repeats, Duplicates, Unattributed int64
}

// Stats returns what the aggregator did since start, as of one moment
// between batches (what became of the processed events adds up to them).
func (a *Aggregator) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}
