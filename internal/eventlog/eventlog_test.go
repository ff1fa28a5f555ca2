package eventlog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
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

// openEmbedded opens a log on an embedded server in a test directory,
// closed when the test ends.
func openEmbedded(t *testing.T) *Log {
	t.Helper()
	l, err := Open(context.Background(), Config{Dir: t.TempDir(), SyncInterval: time.Second, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// consumeAll reads until n events were handled successfully, failing the
// first batch once (it must come back), and returns how often each was.
func consumeAll(t *testing.T, l *Log, n int) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	seen := map[string]int{}
	handled := 0
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
			handled++
		}
		if handled >= n {
			cancel()
		}
		return nil
	})
	<-ctx.Done()
	mu.Lock()
	defer mu.Unlock()
	if handled < n {
		t.Fatalf("consumed %d of %d events", handled, n)
	}
	return seen
}

// TestEmbedded: publish, a failed batch redelivered; a resent event is
// delivered again (counting is exactly-once at the store, by device and
// outcome), and nothing is delivered twice to a successful handler
// otherwise.
func TestEmbedded(t *testing.T) {
	l := openEmbedded(t)
	evs := events(120, "e")
	if err := l.Publish(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if err := l.Publish(context.Background(), evs[:10]); err != nil { // resent
		t.Fatal(err)
	}
	seen := consumeAll(t, l, 130)
	for i, e := range evs {
		if want := 1 + btoi(i < 10); seen[e.ID] != want {
			t.Fatalf("event %s delivered to a successful handler %d times, want %d", e.ID, seen[e.ID], want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestGroupCommit: concurrent publishers' events are stored together, in
// fewer messages than calls, and each call returns once its own events are
// stored; a batch larger than a message is split.
func TestGroupCommit(t *testing.T) {
	l := openEmbedded(t)
	const callers, calls = 32, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				if err := l.Publish(context.Background(), events(2, fmt.Sprintf("g-%d-%d", c, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// One call bigger than a message: a 4 KiB attribute on each of 100 events.
	big := events(100, "big")
	for i := range big {
		big[i].Attributes = map[string]string{"blob": strings.Repeat("x", 4096)}
	}
	if err := l.Publish(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	info, err := l.js.Stream(context.Background(), Stream)
	if err != nil {
		t.Fatal(err)
	}
	msgs := info.CachedInfo().State.Msgs
	if minBig := uint64(100 * 4096 / maxMessageBytes); msgs >= callers*calls || msgs < minBig+1 {
		t.Fatalf("%d messages for %d calls of 2 events and one of 100 large ones (at least %d messages)", msgs, callers*calls, minBig+1)
	}
	seen := consumeAll(t, l, callers*calls*2+100)
	if len(seen) != callers*calls*2+100 {
		t.Fatalf("%d distinct events", len(seen))
	}
	t.Logf("%d calls stored in %d messages", callers*calls+1, msgs)
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
	l := openEmbedded(t)
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

// TestEarlierVersionsMessages: JSON messages that earlier versions stored
// (an array of events, or one event) are still consumed after an upgrade,
// alongside the records this version publishes.
func TestEarlierVersionsMessages(t *testing.T) {
	l := openEmbedded(t)
	old := events(3, "json")
	array, err := json.Marshal(old[:2])
	if err != nil {
		t.Fatal(err)
	}
	single, err := json.Marshal(old[2])
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{array, single} {
		if _, err := l.js.Publish(context.Background(), subject, msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Publish(context.Background(), events(2, "wire")); err != nil {
		t.Fatal(err)
	}
	seen := consumeAll(t, l, 5)
	for _, id := range []string{"json-0", "json-1", "json-2", "wire-0", "wire-1"} {
		if seen[id] != 1 {
			t.Errorf("event %s consumed %d times, want once (consumed: %v)", id, seen[id], seen)
		}
	}
}
