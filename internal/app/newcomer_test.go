package app_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/config"
)

// rawRequest writes head and body on a new connection, half-closes it when
// hangUp is set, and returns the status line of the answer (or the read
// error). The client-side deadline only stops a broken test from hanging.
func rawRequest(t *testing.T, addr, head, body string, hangUp bool) (string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(head + "\r\n" + body)); err != nil {
		return "", err
	}
	if hangUp {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// TestSlowAndBrokenClients: a body cut short is the client's fault (400,
// not 500); a body that never arrives is cut off by body_timeout instead of
// holding the connection; one source cannot hold more than
// max_conns_per_source connections, and honest clients are served again
// once it lets go.
func TestSlowAndBrokenClients(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) {
		c.BodyTimeout = time.Second
		c.MaxConnsPerSource = 4
	})
	addr := strings.TrimPrefix(s.url, "http://")
	head := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: ringmaster\r\nContent-Length: 60000\r\n"
	}
	for _, path := range []string{"/v1/device/check", "/v1/device/events"} {
		if line, err := rawRequest(t, addr, head(path), `{"device_id":`, true); err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("truncated body on %s: %q, %v; want 400", path, line, err)
		}
		// Declares 60,000 bytes, sends 13 and waits: the server answers
		// once body_timeout has passed instead of waiting for the rest.
		if line, err := rawRequest(t, addr, head(path), `{"device_id":`, false); err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("stalled body on %s: %q, %v; want 400", path, line, err)
		}
	}

	// Four idle connections are the cap: a fifth is closed at once.
	var idle []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	if line, err := rawRequest(t, addr, "GET /healthz HTTP/1.1\r\nHost: ringmaster\r\n", "", false); err == nil {
		t.Fatalf("a fifth connection from one source was served: %q", line)
	}
	for _, c := range idle {
		c.Close()
	}
	// The server notices the closed connections as it reads them; an
	// honest check-in is served once it has.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		dev, _ := client.New(s.url, "")
		_, err := dev.CheckIn(ctx, client.CheckInRequest{DeviceID: "honest-1"})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("honest check-in after the idle connections closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The broken requests above were client errors: none counted as a 5xx.
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "ringmaster_http_requests_total") && strings.Contains(l, `code="5`) {
			t.Errorf("a broken client's request counted as a server error: %s", l)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
