// Package registry remembers the devices that check in (last seen,
// attributes, installed versions), written in batches off the request path
// so a check-in never waits for the database.
package registry

import (
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Device is what the registry knows of one device.
type Device struct {
	ID         string            `json:"id"`
	Attributes map[string]string `json:"attributes"`
	Installed  map[string]string `json:"installed"`
	FirstSeen  time.Time         `json:"first_seen"`
	LastSeen   time.Time         `json:"last_seen"`
	CheckIns   int64             `json:"checkins"`
}

// Seen is one device's check-ins within a batch: the latest attributes and
// installed versions, how many check-ins they stand for, and the offers
// they were answered with.
type Seen struct {
	DeviceID   string
	Attributes map[string]string
	Installed  map[string]string
	At         time.Time
	CheckIns   int64
	Offers     []Offer
}

// Offer is the server's record that it offered a deployment's update to a
// device: the exposure the health gate, forecasts and budgets count. Only
// the first offer per deployment and device is kept.
type Offer struct {
	DeploymentID string
	// Wave is the wave whose share first included the device (from 0).
	Wave int
	At   time.Time
}

// Writer persists a batch of sightings in one transaction.
type Writer interface {
	RecordSightings(ctx context.Context, batch []Seen) error
}

// Recorder buffers sightings and writes them in batches. Record never blocks:
// when the buffer is full the sighting is dropped and counted, because the
// device will check in again and serving it matters more. Safe for
// concurrent use.
type Recorder struct {
	in       chan Seen
	w        Writer
	log      *slog.Logger
	maxBatch int
	interval time.Duration
	dropped  atomic.Int64
	written  atomic.Int64
	// flushed receives after every write attempt; tests use it to wait.
	flushed chan struct{}
	// recorded remembers offers already written, so the same offer made
	// at every check-in until the device installs it is written once.
	recorded *offerSet
}

// maxRecordedOffers bounds the memory of offers already written (about
// 40 bytes each); past it the memory starts afresh, and an offer written
// before is written again, harmlessly.
const maxRecordedOffers = 1 << 20

// offerSet is a set of offers by a hash of deployment and device. Safe for
// concurrent use: read on every check-in with offers, written per batch.
type offerSet struct {
	seed maphash.Seed
	mu   sync.RWMutex
	m    map[uint64]struct{}
}

type offerKey struct{ device, deployment string }

func (s *offerSet) has(deviceID, deploymentID string) bool {
	k := maphash.Comparable(s.seed, offerKey{deviceID, deploymentID})
	s.mu.RLock()
	_, ok := s.m[k]
	s.mu.RUnlock()
	return ok
}

func (s *offerSet) add(batch []Seen) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range batch {
		for _, o := range d.Offers {
			if len(s.m) >= maxRecordedOffers {
				clear(s.m)
			}
			s.m[maphash.Comparable(s.seed, offerKey{d.DeviceID, o.DeploymentID})] = struct{}{}
		}
	}
}

// Recorded reports whether an offer of deploymentID to deviceID has been
// written already, so a check-in need not pass it on again. Safe for
// concurrent use.
func (r *Recorder) Recorded(deviceID, deploymentID string) bool {
	return r.recorded.has(deviceID, deploymentID)
}

// NewRecorder returns a Recorder that holds up to buffer pending sightings
// and writes at least every interval.
func NewRecorder(w Writer, log *slog.Logger, buffer int, interval time.Duration) *Recorder {
	return &Recorder{
		in: make(chan Seen, buffer), w: w, log: log, maxBatch: 1000, interval: interval,
		flushed: make(chan struct{}, 1), recorded: &offerSet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}},
	}
}

// Record queues a sighting; it reports false if it was dropped.
func (r *Recorder) Record(s Seen) bool {
	select {
	case r.in <- s:
		return true
	default:
		r.dropped.Add(1)
		return false
	}
}

// Dropped returns how many sightings were dropped because the buffer was full.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Written returns how many device rows have been written.
func (r *Recorder) Written() int64 { return r.written.Load() }

// Flushed returns a channel that receives after each batch write attempt.
func (r *Recorder) Flushed() <-chan struct{} { return r.flushed }

// Run writes batches until ctx ends, then writes what is pending (with a
// short grace period of its own) and returns.
func (r *Recorder) Run(ctx context.Context) error {
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	pending := map[string]Seen{}
	flush := func(ctx context.Context) {
		if len(pending) == 0 {
			return
		}
		batch := make([]Seen, 0, len(pending))
		for _, s := range pending {
			batch = append(batch, s)
		}
		clear(pending)
		if err := r.w.RecordSightings(ctx, batch); err != nil {
			// The devices will be seen again at their next check-in (and
			// offered again, until they install it).
			r.log.Warn("device registry write failed; batch dropped", "devices", len(batch), "err", err)
		} else {
			r.written.Add(int64(len(batch)))
			r.recorded.add(batch)
		}
		select {
		case r.flushed <- struct{}{}:
		default:
		}
	}
	add := func(s Seen) {
		if s.CheckIns == 0 {
			s.CheckIns = 1
		}
		s.Offers = slices.DeleteFunc(s.Offers, func(o Offer) bool { return r.recorded.has(s.DeviceID, o.DeploymentID) })
		if p, ok := pending[s.DeviceID]; ok {
			s.CheckIns += p.CheckIns
			for _, o := range p.Offers { // the earlier offer of a deployment is the record
				if i := slices.IndexFunc(s.Offers, func(n Offer) bool { return n.DeploymentID == o.DeploymentID }); i >= 0 {
					s.Offers[i] = o
				} else {
					s.Offers = append(s.Offers, o)
				}
			}
		}
		pending[s.DeviceID] = s
	}
	for {
		select {
		case s := <-r.in:
			add(s)
			if len(pending) >= r.maxBatch {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		case <-ctx.Done():
			for {
				select {
				case s := <-r.in:
					add(s)
					continue
				default:
				}
				break
			}
			grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			flush(grace)
			cancel()
			return nil
		}
	}
}
