package httpapi

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// One address holds at most max connections: past it, new ones are closed
// at once, and a slot frees when a held connection closes.
func TestLimitConnsPerSource(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitConnsPerSource(inner, 2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial()
	dial()
	first, second := <-accepted, <-accepted
	// The third is refused: the client reads the close, the server never
	// sees it.
	third := dial()
	third.SetReadDeadline(time.Now().Add(time.Minute))
	if n, err := third.Read(make([]byte, 1)); err == nil {
		t.Fatalf("a third connection from one address was held open (read %d bytes)", n)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection over the cap was accepted: %v", c.RemoteAddr())
	default:
	}
	// Closing a held connection frees its slot.
	first.Close()
	dial()
	if c := <-accepted; c == nil {
		t.Fatal("no connection accepted after one closed")
	}
	second.Close()
	second.Close() // closing twice frees one slot, not two
	dial()
	<-accepted
	over := dial()
	over.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatal("a double close freed two slots")
	}
	if off := LimitConnsPerSource(inner, 0, nil); off != inner {
		t.Fatal("a zero cap must leave the listener alone")
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// deadlineWriter is a ResponseWriter that records read deadlines, like the
// server's own.
type deadlineWriter struct {
	http.ResponseWriter
	deadlines []time.Time
}

func (w *deadlineWriter) SetReadDeadline(t time.Time) error {
	w.deadlines = append(w.deadlines, t)
	return nil
}

// The body deadline is set before the handler reads, lifted at the end of
// the body, skipped for streams, and costs no allocation per request.
func TestBodyDeadline(t *testing.T) {
	buf := make([]byte, 64)
	read := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := r.Body.Read(buf); err != nil {
				return
			}
		}
	})
	h := BodyDeadline(read, 30*time.Second, func(r *http.Request) bool { return r.Method == http.MethodPut })
	w := &deadlineWriter{deadlines: make([]time.Time, 0, 4)}
	r := httptest.NewRequest(http.MethodPost, "/v1/device/check", strings.NewReader(`{"device_id":"d"}`))
	h.ServeHTTP(w, r)
	if len(w.deadlines) != 2 || time.Until(w.deadlines[0]) < 20*time.Second || !w.deadlines[1].IsZero() {
		t.Fatalf("deadlines set: %v; want one 30 s ahead, then lifted", w.deadlines)
	}
	w.deadlines = w.deadlines[:0]
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPut, "/v1/updates/x/payloads/y", strings.NewReader("chunk")))
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if len(w.deadlines) != 0 {
		t.Fatalf("a stream or a bodiless request got deadlines: %v", w.deadlines)
	}
	body := readCloser{strings.NewReader("")}
	req := httptest.NewRequest(http.MethodPost, "/v1/device/check", body)
	allocs := testing.AllocsPerRun(100, func() {
		w.deadlines = w.deadlines[:0]
		body.Reset(`{"device_id":"d"}`)
		req.Body, req.ContentLength = body, 17
		h.ServeHTTP(w, req)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per request", allocs)
	}
}
