package httpapi

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// BodyDeadline bounds how long a client may take to send a request body:
// a client that declares a body and sends it slowly, or not at all, is cut
// off after timeout instead of holding its connection open. Requests for
// which stream reports true (payload uploads, which may be gigabytes on a
// slow link) are left alone. The deadline is lifted once the body has been
// read, so a handler that works long afterwards is not cut off.
//
// It allocates nothing per request when it wraps the server's own
// ResponseWriter (put it outermost): check-ins pass through it.
func BodyDeadline(next http.Handler, timeout time.Duration, stream func(*http.Request) bool) http.Handler {
	if timeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody || stream(r) {
			next.ServeHTTP(w, r)
			return
		}
		dl, ok := w.(readDeadliner)
		if !ok {
			dl = http.NewResponseController(w) // a wrapped writer: find the connection beneath
		}
		if dl.SetReadDeadline(time.Now().Add(timeout)) != nil {
			next.ServeHTTP(w, r)
			return
		}
		b := deadlineBodies.Get().(*deadlineBody)
		b.ReadCloser, b.dl, b.done = r.Body, dl, false
		r.Body = b
		next.ServeHTTP(w, r)
		// The server keeps its own reference to the body; ours is done.
		*b = deadlineBody{}
		deadlineBodies.Put(b)
	})
}

type readDeadliner interface{ SetReadDeadline(time.Time) error }

var deadlineBodies = sync.Pool{New: func() any { return new(deadlineBody) }}

type deadlineBody struct {
	io.ReadCloser
	dl   readDeadliner
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.dl.SetReadDeadline(time.Time{})
	}
	return n, err
}

// BodyError says what went wrong reading a request body, as the client's
// fault: a body cut short of its Content-Length, or one that did not arrive
// in time, is a 400, never a 500.
func BodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fault.E(fault.TooLarge, "request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fault.E(fault.Invalid, "the request body did not arrive in time")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fault.E(fault.Invalid, "the request body ended before its declared Content-Length")
	}
	return fault.Wrap(err, fault.Invalid, "could not read the request body")
}

// LimitConnsPerSource caps the connections one remote address holds open
// at once: past max, new connections from it are closed at once, so one
// client cannot take every file descriptor and starve the others. Zero
// means no cap (behind a load balancer every connection comes from it).
func LimitConnsPerSource(l net.Listener, max int, log *slog.Logger) net.Listener {
	if max <= 0 {
		return l
	}
	return &sourceLimiter{Listener: l, max: max, open: map[string]int{}, log: log}
}

type sourceLimiter struct {
	net.Listener
	max int
	log *slog.Logger

	mu      sync.Mutex
	open    map[string]int
	refused int64
	warned  time.Time
}

func (s *sourceLimiter) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceOf(c.RemoteAddr())
		s.mu.Lock()
		if s.open[src] >= s.max {
			s.refused++
			refused, warn := s.refused, time.Since(s.warned) > time.Minute
			if warn {
				s.warned = time.Now()
			}
			s.mu.Unlock()
			_ = c.Close()
			if warn {
				s.log.Warn("refusing connections over the per-source cap", "source", src, "max_conns_per_source", s.max, "refused_total", refused)
			}
			continue
		}
		s.open[src]++
		s.mu.Unlock()
		return &countedConn{Conn: c, release: func() { s.release(src) }}, nil
	}
}

func (s *sourceLimiter) release(src string) {
	s.mu.Lock()
	if s.open[src]--; s.open[src] <= 0 {
		delete(s.open, src)
	}
	s.mu.Unlock()
}

func sourceOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// ReadFrom and CloseWrite reach the TCP connection beneath, so responses
// still use sendfile and a graceful close still half-closes.
func (c *countedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
