// Package aggregate consumes the device event log into the health counters,
// exactly once per device, outcome, wave and cohort cell.
package aggregate

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
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

	processed, counted, repeats, duplicates, unattributed atomic.Int64
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
		a.processed.Add(int64(len(events)))
		a.counted.Add(int64(t.Counted))
		a.repeats.Add(int64(t.Repeats))
		a.duplicates.Add(int64(t.Duplicates))
		a.unattributed.Add(int64(t.Unattributed))
		return a.Failpoints.Reach(ctx, "aggregate-committed")
	})
}

// Stats are the events an aggregator processed since start, and what
// became of them (as store.Tally says).
type Stats struct {
	Processed, Counted, Repeats, Duplicates, Unattributed int64
}

// Stats returns what the aggregator did since start.
func (a *Aggregator) Stats() Stats {
	return Stats{Processed: a.processed.Load(), Counted: a.counted.Load(), Repeats: a.repeats.Load(),
		Duplicates: a.duplicates.Load(), Unattributed: a.unattributed.Load()}
}
