package httpapi

import (
	"io"
	"log/slog"
	"net"
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
