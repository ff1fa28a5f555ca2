// Package ratelimit keeps one token bucket per key (a device, a source
// address, a token) in a sharded map, forgetting keys idle for a while so
// memory stays bounded by the active set, not by everyone ever seen.
package ratelimit

import (
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/time/rate"
)

const shards = 64

// Limits is a rate in events per second and a burst; a zero Rate disables
// the limit.
type Limits struct {
	Rate  float64 `yaml:"rate" json:"rate"`
	Burst int     `yaml:"burst" json:"burst"`
}

// Limiter limits events per key. Safe for concurrent use.
type Limiter struct {
	limits Limits
	idle   time.Duration
	shards [shards]shard
}

type shard struct {
	mu    sync.Mutex
	keys  map[string]*entry
	swept time.Time
}

type entry struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns a limiter; keys idle longer than idle are forgotten (a
// forgotten key starts again with a full burst, which idle keys have anyway).
func New(l Limits, idle time.Duration) *Limiter {
	if l.Burst < 1 {
		l.Burst = 1
	}
	r := &Limiter{limits: l, idle: idle}
	for i := range r.shards {
		r.shards[i].keys = map[string]*entry{}
	}
	return r
}

// Active reports whether the limiter limits anything.
func (r *Limiter) Active() bool { return r != nil && r.limits.Rate > 0 }

// Allow reports whether one more event for key may happen at now.
func (r *Limiter) Allow(key string, now time.Time) bool {
	if !r.Active() {
		return true
	}
	s := &r.shards[xxhash.Sum64String(key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > r.idle {
		for k, e := range s.keys {
			if now.Sub(e.seen) > r.idle {
				delete(s.keys, k)
			}
		}
		s.swept = now
	}
	e := s.keys[key]
	if e == nil {
		e = &entry{lim: rate.NewLimiter(rate.Limit(r.limits.Rate), r.limits.Burst)}
		s.keys[key] = e
	}
	e.seen = now
	return e.lim.AllowN(now, 1)
}

// Len returns how many keys are remembered.
func (r *Limiter) Len() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.keys)
		s.mu.Unlock()
	}
	return n
}
