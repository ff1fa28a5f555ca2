package dbtest

import (
	"net"
	"net/url"
	"sync"
	"testing"
)

// Freezer is a TCP proxy in front of a database that can freeze: while
// frozen it accepts connections and holds the open ones but moves no
// bytes, as a hung database server or a partitioned network does.
type Freezer struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	conns  []net.Conn
}

// Freeze puts a Freezer in front of the database at dsn (a postgres://
// URL) and returns it with the DSN that goes through it. It stops with
// the test.
func Freeze(t testing.TB, dsn string) (*Freezer, string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &Freezer{l: l, target: u.Host}
	f.cond = sync.NewCond(&f.mu)
	go f.accept()
	t.Cleanup(f.close)
	u.Host = l.Addr().String()
	return f, u.String()
}

// Set freezes (true) or thaws (false) the proxy.
func (f *Freezer) Set(frozen bool) {
	f.mu.Lock()
	f.frozen = frozen
	f.mu.Unlock()
	f.cond.Broadcast()
}

func (f *Freezer) accept() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		go f.serve(c)
	}
}

func (f *Freezer) serve(c net.Conn) {
	f.wait()
	d, err := net.Dial("tcp", f.target)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, c, d)
	f.mu.Unlock()
	go f.pipe(d, c)
	f.pipe(c, d)
}

// pipe copies src to dst, holding each chunk while frozen.
func (f *Freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *Freezer) wait() {
	f.mu.Lock()
	for f.frozen {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

func (f *Freezer) close() {
	f.Set(false)
	f.l.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}
