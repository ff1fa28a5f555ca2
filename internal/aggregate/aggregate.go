// Package aggregate consumes the device event log into the health counters,
// exactly once per device, outcome, wave and cohort cell.
package aggregate

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ringmaster/ringmaster/internal/eventlog"
	"github.com/ringmaster/ringmaster/internal/failpoint"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Aggregator consumes the event log into the store's counters.
type Aggregator struct {
	Log        *eventlog.Log
	Store      *store.Store
	Cohort     store.Cohort
	Batch      int
	AckWait    time.Duration
	Logger     *slog.Logger
	Failpoints failpoint.Set

	processed, counted, duplicates, unattributed atomic.Int64
}

// Run consumes until ctx ends. Each batch commits its counts before it is
// acked; a batch redelivered after a crash counts nothing twice.
func (a *Aggregator) Run(ctx context.Context) error {
	return a.Log.Consume(ctx, "health-aggregator", a.Batch, a.AckWait, func(ctx context.Context, events []telemetry.Event) error {
		t, err := a.Store.RecordEvents(ctx, events, a.Cohort)
		if err != nil {
			return err
		}
		a.processed.Add(int64(len(events)))
		a.counted.Add(int64(t.Counted))
		a.duplicates.Add(int64(t.Duplicates))
		a.unattributed.Add(int64(t.Unattributed))
		return a.Failpoints.Reach(ctx, "aggregate-committed")
	})
}

// Stats returns, since start, how many events were processed, how many new
// device outcomes they counted, and how many were duplicates or belonged
// to no known deployment (the rest repeated an outcome a device had
// already reported).
func (a *Aggregator) Stats() (processed, counted, duplicates, unattributed int64) {
	return a.processed.Load(), a.counted.Load(), a.duplicates.Load(), a.unattributed.Load()
}
