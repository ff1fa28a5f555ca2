// Package eventlog carries device telemetry through a NATS JetStream
// stream: by default a server embedded in the process (file store under the
// data directory, no network port), or an external NATS cluster with the
// same client code. Consumers ack only after their effects are committed,
// so every event is delivered at least once; the aggregator makes counting
// exactly-once.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Stream and subject names.
const (
	Stream  = "RINGMASTER_EVENTS"
	subject = "ringmaster.events"
)

// Config configures the event log.
type Config struct {
	// URL of an external NATS server or cluster (several URLs separated by
	// commas); empty embeds one.
	URL string
	// Creds is a NATS credentials file (JWT and seed) for URL's servers;
	// TLSCA a PEM file of the CAs their TLS certificates chain to.
	Creds string
	TLSCA string
	// Replicas is how many servers keep a copy of the stream; 0 picks the
	// cluster's size, at most 3 (R3 on a 3-node cluster), 1 when embedded.
	Replicas int
	// Dir holds the embedded server's file store.
	Dir string
	// SyncInterval is how often the embedded server fsyncs the stream;
	// zero syncs every write. A process crash loses nothing either way (the
	// data is in the OS); a power cut can lose up to one interval.
	SyncInterval time.Duration
	// MaxAge is how long events stay in the stream.
	MaxAge time.Duration
	Log    *slog.Logger
}

// Log is an open event log. Safe for concurrent use.
type Log struct {
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	pub *publisher
}

// Open starts (or connects to) the NATS server and makes sure the stream
// exists.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	l := &Log{log: cfg.Log}
	var err error
	if cfg.URL == "" {
		opts := &server.Options{
			ServerName: "ringmaster-embedded", JetStream: true, StoreDir: cfg.Dir, DontListen: true,
			NoSigs: true, NoLog: true, SyncInterval: cfg.SyncInterval, SyncAlways: cfg.SyncInterval == 0,
		}
		if l.srv, err = server.NewServer(opts); err != nil {
			return nil, fmt.Errorf("embedded NATS: %w", err)
		}
		l.srv.Start()
		if !l.srv.ReadyForConnections(30 * time.Second) {
			l.srv.Shutdown()
			return nil, errors.New("embedded NATS did not start")
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("ringmaster"))
	} else {
		opts := []nats.Option{nats.Name("ringmaster"), nats.MaxReconnects(-1)}
		if cfg.Creds != "" {
			opts = append(opts, nats.UserCredentials(cfg.Creds))
		}
		if cfg.TLSCA != "" {
			opts = append(opts, nats.RootCAs(cfg.TLSCA))
		}
		l.nc, err = nats.Connect(cfg.URL, opts...)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	// An ack lost with a cluster node is waited for 5 s, then the message
	// is sent again (publisher.retry).
	if l.js, err = jetstream.New(l.nc, jetstream.WithPublishAsyncTimeout(5*time.Second)); err != nil {
		l.Close()
		return nil, err
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	replicas := cfg.Replicas
	if replicas <= 0 {
		replicas = 1
		if cfg.URL != "" {
			replicas = min(3, len(l.nc.Servers())) // the seeds given and the servers they announced
		}
	}
	if err := l.createStream(ctx, jetstream.StreamConfig{
		Name: Stream, Subjects: []string{subject}, Storage: jetstream.FileStorage,
		MaxAge: cfg.MaxAge, Duplicates: 10 * time.Minute, Replicas: replicas,
	}); err != nil {
		l.Close()
		return nil, fmt.Errorf("create event stream: %w", err)
	}
	l.pub = startPublisher(l.js)
	return l, nil
}

// streamWait bounds how long Open waits for a forming cluster.
const streamWait = time.Minute

// createStream creates or updates the stream. A cluster whose nodes have
// just started answers before its nodes know one another: until then it
// has no peers to place the replicas on (or no JetStream leader), and the
// stream is asked for again every half second, for up to streamWait.
func (l *Log) createStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	deadline := time.Now().Add(streamWait)
	for warned := false; ; {
		_, err := l.js.CreateOrUpdateStream(ctx, cfg)
		var api *jetstream.APIError
		forming := errors.As(err, &api) && (api.ErrorCode == jetstream.ErrorCode(server.JSClusterNoPeersErrF) ||
			api.ErrorCode == jetstream.ErrorCode(server.JSClusterNotAvailErr))
		if !forming || time.Now().After(deadline) {
			return err
		}
		if !warned && l.log != nil {
			l.log.Warn("waiting for the NATS cluster to place the event stream's replicas", "replicas", cfg.Replicas, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Close disconnects and stops the embedded server.
func (l *Log) Close() {
	if l.pub != nil {
		l.pub.stop()
	}
	if l.nc != nil {
		l.nc.Close()
	}
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
}

// approxEventBytes is an event's typical size in a message, to fetch
// about a batch of events at a time.
const approxEventBytes = 256

// Handler processes a batch; it returns nil only once the batch's effects
// are durable (then the batch is acked).
type Handler func(ctx context.Context, events []telemetry.Event) error

// Consume feeds batches of about batch events (fetched by size) to handle
// through the named durable consumer until ctx ends. A batch whose handler
// fails is not acked and comes back after ackWait. The next batch is
// fetched and decoded while handle runs (on another core), and waits
// extended until its turn.
func (l *Log) Consume(ctx context.Context, durable string, batch int, ackWait time.Duration, handle Handler) error {
	cons, err := l.consumer(ctx, jetstream.ConsumerConfig{
		Durable: durable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait, MaxAckPending: batch * 4,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", durable, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan fetched)
	go l.fetch(ctx, cons, durable, batch, ackWait, next)
	for f := range next {
		if ctx.Err() != nil {
			nakAll(f.msgs) // fetched as ctx ended: back to the stream at once
			continue
		}
		if err := handleExtending(ctx, handle, f.events, f.msgs, ackWait); err != nil {
			if ctx.Err() == nil {
				l.log.Warn("event batch failed; it will be redelivered", "consumer", durable, "events", len(f.events), "err", err)
			}
			nakAll(f.msgs)
			continue
		}
		for _, m := range f.msgs {
			if err := m.Ack(); err != nil {
				// The effects are committed; a redelivery is skipped as a duplicate.
				l.log.Debug("event ack failed", "err", err)
			}
		}
	}
	return nil
}

func nakAll(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.Nak()
	}
}

// fetched is a decoded batch and the messages it came in.
type fetched struct {
	events []telemetry.Event
	msgs   []jetstream.Msg
}

// fetch sends decoded batches to next until ctx ends, then closes it. A
// batch waiting for the handler is kept in progress meanwhile.
func (l *Log) fetch(ctx context.Context, cons jetstream.Consumer, durable string, batch int, ackWait time.Duration, next chan<- fetched) {
	defer close(next)
	// Fetch by size (messages carry up to maxMessageBytes of events), and
	// at most batch messages (FetchBytes alone sizes its buffers for a
	// million).
	maxBytes := max(batch*approxEventBytes, 2*maxMessageBytes)
	// A fetch ends when it is full or after wait, with what came meanwhile:
	// a short wait counts a trickle of events within a tenth of a second
	// (gates judge fresh data), and a consumer that falls behind gets full
	// batches at once, so its transactions grow with its backlog. Messages
	// that arrive early wait in hand for the fetch to end, with no one
	// saying they are in progress: well under a third of ackWait, then
	// waitTurn's first third, and they are still ours.
	wait := min(100*time.Millisecond, ackWait/3)
	// Each batch's slice is made the size of the last: appending tens of
	// thousands of events one at a time would copy the batch over and
	// over as it grew.
	size := 0
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxBytes(maxBytes), jetstream.FetchMaxWait(wait))
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("event fetch failed", "consumer", durable, "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		f := fetched{events: make([]telemetry.Event, 0, size)}
		for m := range msgs.Messages() {
			var err error
			if f.events, err = telemetry.DecodeLogged(f.events, m.Data()); err != nil {
				l.log.Warn("dropping an undecodable event message", "err", err)
				_ = m.Term()
				continue
			}
			f.msgs = append(f.msgs, m)
		}
		if len(f.events) == 0 {
			continue
		}
		size = len(f.events)
		if !waitTurn(ctx, next, f, ackWait) {
			nakAll(f.msgs) // back to whoever consumes next
			return
		}
	}
}

// waitTurn hands f to the handler loop, telling the server its messages
// are in progress every third of ackWait until it is taken; false if ctx
// ended first.
func waitTurn(ctx context.Context, next chan<- fetched, f fetched, ackWait time.Duration) bool {
	t := time.NewTicker(ackWait / 3)
	defer t.Stop()
	for {
		select {
		case next <- f:
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			for _, m := range f.msgs {
				_ = m.InProgress()
			}
		}
	}
}

// Backlog is how many messages the named durable consumer has not yet
// acked: waiting in the stream, and delivered but not acked.
func (l *Log) Backlog(ctx context.Context, durable string) (int64, error) {
	cons, err := l.js.Consumer(ctx, Stream, durable)
	if err != nil {
		return 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// consumer returns the durable consumer cfg names, creating it, or
// updating it when its settings changed. An existing consumer with the
// same settings is left alone: the server redelivers the batches in
// flight to other consumers of a durable it updates (another replica
// starting up would otherwise make every replica's batch count twice over).
func (l *Log) consumer(ctx context.Context, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := l.js.Consumer(ctx, Stream, cfg.Durable)
	if err == nil {
		have := cons.CachedInfo().Config
		if have.AckPolicy == cfg.AckPolicy && have.AckWait == cfg.AckWait && have.MaxAckPending == cfg.MaxAckPending {
			return cons, nil
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return l.js.CreateOrUpdateConsumer(ctx, Stream, cfg)
}

// handleExtending runs handle on a batch, telling the server the batch is
// in progress every third of ackWait while it runs: a short ackWait brings
// a crashed consumer's batch back within seconds, and a slow batch (a busy
// database) is not redelivered to another consumer meanwhile.
func handleExtending(ctx context.Context, handle Handler, events []telemetry.Event, msgs []jetstream.Msg, ackWait time.Duration) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, m := range msgs {
					_ = m.InProgress() // at worst, the batch comes back and counts nothing twice
				}
			}
		}
	}()
	return handle(ctx, events)
}
