package delivery

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Source is where snapshots come from.
type Source interface {
	// Generation changes whenever what devices are offered may change.
	Generation(ctx context.Context) (int64, error)
	// View returns everything a snapshot is built from, read consistently.
	View(ctx context.Context) (View, error)
}

// Refresher holds the current Snapshot and rebuilds it when the source's
// generation changes: at once when kicked (this process changed something)
// and by polling (another replica did). Safe for concurrent use.
type Refresher struct {
	src     Source
	rules   Compiler
	log     *slog.Logger
	poll    time.Duration
	now     func() time.Time
	current atomic.Pointer[Snapshot]
	kick    chan struct{}
	mu      sync.Mutex // one rebuild at a time
}

// NewRefresher returns a Refresher polling src every poll.
func NewRefresher(src Source, rules Compiler, log *slog.Logger, poll time.Duration, now func() time.Time) *Refresher {
	r := &Refresher{src: src, rules: rules, log: log, poll: poll, now: now, kick: make(chan struct{}, 1)}
	r.current.Store(NewSnapshot(View{Generation: -1}, now(), rules))
	return r
}

// Snapshot returns the current snapshot. It never blocks.
func (r *Refresher) Snapshot() *Snapshot { return r.current.Load() }

// Kick asks Run to check for changes now. It never blocks.
func (r *Refresher) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Refresh rebuilds the snapshot now if the generation changed, and returns
// once the new one is in place: callers that changed the catalog use it so
// their next check-in sees the change.
func (r *Refresher) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	gen, err := r.src.Generation(ctx)
	if err != nil {
		return err
	}
	if gen == r.current.Load().Generation {
		return nil
	}
	v, err := r.src.View(ctx)
	if err != nil {
		return err
	}
	start := r.now()
	s := NewSnapshot(v, start, r.rules)
	r.current.Store(s)
	r.log.Info("device snapshot rebuilt", "generation", v.Generation, "releases", s.Releases(),
		"holds", len(v.Holds), "rings", len(v.Rings), "took", r.now().Sub(start))
	for _, p := range s.Problems {
		r.log.Warn("rule in the catalog does not compile; it matches no device", "problem", p)
	}
	return nil
}

// Run refreshes on kicks and every poll interval until ctx ends. A failed
// refresh keeps serving the previous snapshot.
func (r *Refresher) Run(ctx context.Context) error {
	t := time.NewTicker(r.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.kick:
		}
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("device snapshot refresh failed; serving the previous one", "err", err)
		}
	}
}
