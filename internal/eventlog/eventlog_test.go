package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

func events(n int, prefix string) []telemetry.Event {
	out := make([]telemetry.Event, n)
	for i := range out {
		out[i] = telemetry.Event{ID: fmt.Sprintf("%s-%d", prefix, i), DeviceID: "d", UpdateID: "upd_x", Type: telemetry.Offered, Time: time.Now()}
	}
	return out
}

// consumeAll reads until n events arrived, failing the first batch once
// (it must come back).
func consumeAll(t *testing.T, l *Log, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	failed := false
	go l.Consume(ctx, "test", 50, time.Second, func(ctx context.Context, evs []telemetry.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			return fmt.Errorf("not yet")
		}
		for _, e := range evs {
			seen[e.ID]++
		}
		if len(seen) >= n {
			cancel()
		}
		return nil
	})
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < n {
		t.Fatalf("consumed %d of %d events", len(seen), n)
	}
	return seen
}

// TestEmbedded: publish, a failed batch redelivered, dedupe of a resent
// event id by the stream.
func TestEmbedded(t *testing.T) {
	l, err := Open(context.Background(), Config{Dir: t.TempDir(), SyncInterval: time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	evs := events(120, "e")
	if err := l.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if err := l.Publish(context.Background(), evs[:10]); err != nil { // resent: dropped by the duplicate window
		t.Fatal(err)
	}
	seen := consumeAll(t, l, 120)
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s delivered to a successful handler %d times", id, n)
		}
	}
}

// TestExternal uses the same client code against a NATS server reached by
// URL (started here on a random port, so nothing else needs to be up).
func TestExternal(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	l, err := Open(context.Background(), Config{URL: srv.ClientURL(), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Publish(context.Background(), events(30, "x")); err != nil {
		t.Fatal(err)
	}
	consumeAll(t, l, 30)
}

// TestSlowBatchIsNotRedelivered: a batch whose handler runs for several
// ack waits is kept in progress, so a second consumer on the same durable
// (another replica) is not handed it meanwhile; once its consumer stops
// without acking, it comes back within an ack wait.
func TestSlowBatchIsNotRedelivered(t *testing.T) {
	l, err := Open(context.Background(), Config{Dir: t.TempDir(), SyncInterval: time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Publish(context.Background(), events(5, "slow")); err != nil {
		t.Fatal(err)
	}
	const ackWait = 2 * time.Second
	var mu sync.Mutex
	handled := map[string]int{}
	slowCtx, stopSlow := context.WithCancel(context.Background())
	started := make(chan struct{})
	go l.Consume(slowCtx, "slow", 50, ackWait, func(ctx context.Context, evs []telemetry.Event) error {
		close(started)
		<-ctx.Done() // never finishes: the process dies with the batch in hand
		return ctx.Err()
	})
	<-started
	otherCtx, stopOther := context.WithCancel(context.Background())
	defer stopOther()
	go l.Consume(otherCtx, "slow", 50, ackWait, func(ctx context.Context, evs []telemetry.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			handled[e.ID]++
		}
		return nil
	})
	time.Sleep(3 * ackWait)
	mu.Lock()
	if len(handled) != 0 {
		t.Fatalf("a batch in progress was redelivered: %v", handled)
	}
	mu.Unlock()
	stopSlow()
	deadline := time.Now().Add(20 * ackWait)
	for {
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n == 5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its consumer stopped, %d of 5 events came back", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
