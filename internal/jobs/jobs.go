// Package jobs builds the River client that runs every durable job kind
// (publishing pipeline, rollout controller) on the store's database.
package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/ringmaster/ringmaster/internal/store"
)

// Config tunes the job client.
type Config struct {
	// Workers is how many jobs run at once.
	Workers int
	// RescueAfter is how long a job may run before it is presumed lost (its
	// process died) and run again; kinds with their own Timeout wait that.
	RescueAfter time.Duration
	// PollInterval is how often idle workers look for jobs where the
	// database cannot notify them (SQLite).
	PollInterval time.Duration
	// Middleware wraps inserting and working jobs (tracing).
	Middleware []rivertype.Middleware
}

// quiet passes a library's warnings and errors on as they are and its
// routine information (River's "producer job counts" every few seconds,
// its cleaners every minute) at debug level: an operator's log at info
// shows what Ringmaster did, not the library's heartbeat.
type quiet struct{ slog.Handler }

func (q quiet) Enabled(ctx context.Context, l slog.Level) bool {
	return q.Handler.Enabled(ctx, demote(l))
}

func (q quiet) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return q.Handler.Handle(ctx, r)
}

func (q quiet) WithAttrs(as []slog.Attr) slog.Handler { return quiet{q.Handler.WithAttrs(as)} }
func (q quiet) WithGroup(name string) slog.Handler    { return quiet{q.Handler.WithGroup(name)} }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return slog.LevelDebug
	}
	return l
}

// NewClient returns a River client for workers and periodic jobs. Periodic
// jobs are enqueued by the elected leader only, so they run once across
// replicas.
func NewClient(s *store.Store, log *slog.Logger, cfg Config, workers *river.Workers, periodic []*river.PeriodicJob) (*river.Client[*sql.Tx], error) {
	host, _ := os.Hostname()
	c, err := river.NewClient(s.RiverDriver(), &river.Config{
		// The id names the process (river_leader.leader_id says which
		// replica leads): host and pid.
		ID:                   fmt.Sprintf("%s-%d", host, os.Getpid()),
		Logger:               slog.New(quiet{log.Handler()}),
		Queues:               map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: max(cfg.Workers, 1)}},
		Workers:              workers,
		PeriodicJobs:         periodic,
		Middleware:           cfg.Middleware,
		RescueStuckJobsAfter: cfg.RescueAfter,
		JobTimeout:           min(time.Minute, cfg.RescueAfter),
		FetchPollInterval:    cfg.PollInterval,
		FetchCooldown:        min(cfg.PollInterval, 100*time.Millisecond),
	})
	if err != nil {
		return nil, fmt.Errorf("create job client: %w", err)
	}
	return c, nil
}
