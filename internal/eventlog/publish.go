package eventlog

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Messages carry events as telemetry.AppendLogged writes them, up to
// maxMessageBytes (one event larger than that goes alone). Consumers also
// read the JSON messages of earlier versions (telemetry.DecodeLogged).
const maxMessageBytes = 128 << 10

// maxInFlight bounds the groups published and not yet acknowledged.
const maxInFlight = 8

// errClosed is what Publish returns once the log is closed.
var errClosed = fault.E(fault.Unavailable, "event log closed")

// publisher commits concurrent Publish calls in groups: the events of the
// calls that arrive while earlier ones are being stored go out together,
// a message per up to maxMessageBytes, and each call returns when the
// stream has stored its group. Under load a message carries hundreds of
// events, though each device request carries a few, so the stream stores,
// and the aggregator fetches and acks, a message per group rather than
// per event; a lone call is published at once.
type publisher struct {
	js       jetstream.JetStream
	requests chan *publishRequest
	inFlight chan flight
	quit     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

type publishRequest struct {
	events []telemetry.Event
	done   chan error
}

// flight is a group being stored: its messages' acks and its callers.
type flight struct {
	acks  []jetstream.PubAckFuture
	err   error
	group []*publishRequest
}

func startPublisher(js jetstream.JetStream) *publisher {
	p := &publisher{js: js, requests: make(chan *publishRequest), inFlight: make(chan flight, maxInFlight), quit: make(chan struct{})}
	p.wg.Add(2)
	go p.gather()
	go p.complete()
	return p
}

func (p *publisher) stop() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}

// Publish appends events and returns once the stream has stored them all.
// A call whose ctx ends may still be stored: the caller cannot tell, and
// counting is exactly-once whatever the stream holds twice.
func (l *Log) Publish(ctx context.Context, events []telemetry.Event) error {
	if len(events) == 0 {
		return nil
	}
	r := &publishRequest{events: events, done: make(chan error, 1)}
	select {
	case l.pub.requests <- r:
	case <-l.pub.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gather takes a request, adds every request already waiting, and
// publishes them as one group.
func (p *publisher) gather() {
	defer p.wg.Done()
	defer close(p.inFlight)
	for {
		var group []*publishRequest
		select {
		case r := <-p.requests:
			group = append(group, r)
		case <-p.quit:
			return
		}
	more:
		for {
			select {
			case r := <-p.requests:
				group = append(group, r)
			default:
				break more
			}
		}
		f := flight{group: group}
		f.acks, f.err = p.publish(group)
		select {
		case p.inFlight <- f:
		case <-p.quit:
			for _, r := range group {
				r.done <- errClosed
			}
			return
		}
	}
}

// publish sends a group's events as messages of up to maxMessageBytes.
func (p *publisher) publish(group []*publishRequest) ([]jetstream.PubAckFuture, error) {
	var acks []jetstream.PubAckFuture
	body := make([]byte, 0, 4096)
	send := func() error {
		if len(body) == 0 {
			return nil
		}
		// The message keeps its data until acked; body is reused.
		msg := &nats.Msg{Subject: subject, Data: bytes.Clone(body)}
		for attempt := 0; ; attempt++ {
			f, err := p.js.PublishMsgAsync(msg)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && attempt < 500 {
				select {
				case <-p.quit:
					return errClosed
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			if err != nil {
				return fault.Wrap(err, fault.Unavailable, "event log unavailable")
			}
			acks = append(acks, f)
			body = body[:0]
			return nil
		}
	}
	var moved []byte
	for _, r := range group {
		for i := range r.events {
			mark := len(body)
			body = telemetry.AppendLogged(body, &r.events[i])
			if mark > 0 && len(body) > maxMessageBytes {
				// Too large with this event: send the message without it, and
				// start the next with it.
				moved = append(moved[:0], body[mark:]...)
				body = body[:mark]
				if err := send(); err != nil {
					return acks, err
				}
				body = append(body, moved...)
			}
		}
	}
	return acks, send()
}

// complete waits for each group's acks, in order, and answers its callers.
func (p *publisher) complete() {
	defer p.wg.Done()
	for f := range p.inFlight {
		err := f.err
		for _, a := range f.acks {
			if err != nil {
				break
			}
			select {
			case <-a.Ok():
			case <-a.Err():
				// A node of a cluster died or the stream is electing a new
				// leader: send the message again until it is stored (the
				// stream may then hold it twice; counting is exactly-once).
				if e := p.retry(a.Msg()); e != nil {
					err = fault.Wrap(e, fault.Unavailable, "event log did not store an event")
				}
			case <-p.quit:
				err = errClosed
			}
		}
		for _, r := range f.group {
			r.done <- err
		}
	}
}

// RetryFor is how long a message the stream did not acknowledge is sent
// again before its callers are told the event log is unavailable: longer
// than a JetStream leader election after a node's loss.
const RetryFor = 20 * time.Second

// retry publishes msg again, with backoff, until the stream stores it or
// RetryFor has passed.
func (p *publisher) retry(msg *nats.Msg) error {
	deadline := time.Now().Add(RetryFor)
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.js.PublishMsg(ctx, msg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-p.quit:
			return errClosed
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
