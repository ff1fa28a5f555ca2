package console_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
	"golang.org/x/sync/errgroup"
)

// server is a real Ringmaster on 127.0.0.1:0 (SQLite, embedded NATS).
type server struct {
	*app.App
	url, token string
	admin      *client.Client
}

func startServer(t testing.TB, mut func(*config.Config)) *server {
	t.Helper()
	a := apptest.Start(t, "", mut)
	return &server{App: a.App, url: a.URL, token: a.Token, admin: a.Admin}
}

// publish publishes a small update of product at version.
func (s *server) publish(t testing.TB, product, version string) client.Update {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payload.bin")
	b := make([]byte, 256)
	_, _ = rand.Read(b)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := s.admin.PublishFiles(context.Background(), client.NewUpdate{Product: product, Version: version}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// token issues a token with role, limited to products when given.
func (s *server) newToken(t testing.TB, name, role string, products ...string) string {
	t.Helper()
	_, secret, err := s.admin.CreateToken(context.Background(), client.NewToken{Name: name, Role: role, Products: products})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// report has n devices (ids prefix-0 …) check in and then report an
// install outcome on their offer of product (failed where fails says so);
// devices not offered it (outside the waves so far) report nothing. Every
// device checks in before any reports: the gate judges events as they are
// counted and may pause the rollout, which would otherwise leave whichever
// devices happened to check in late without an offer.
func (s *server) report(t testing.TB, prefix, product string, n int, attrs func(i int) map[string]string, fails func(i int) bool) {
	t.Helper()
	ctx := context.Background()
	clients := make([]*client.Client, n)
	offers := make([][]client.Offer, n)
	parallel(t, n, func(i int) error {
		id := fmt.Sprintf("%s-%03d", prefix, i)
		clients[i], _ = client.New(s.url, s.DeviceCredential(id))
		r, err := clients[i].CheckIn(ctx, client.CheckInRequest{DeviceID: id, Attributes: attrs(i),
			Installed: []client.Installed{{Product: product, Version: []string{"1.0", "1.1", "1.2", "1.2"}[i%4]}}})
		if err != nil {
			return fmt.Errorf("device %s: %v", id, err)
		}
		offers[i] = r.Offers
		return nil
	})
	parallel(t, n, func(i int) error {
		if len(offers[i]) == 0 {
			return nil
		}
		id := fmt.Sprintf("%s-%03d", prefix, i)
		typ := "install_succeeded"
		if fails(i) {
			typ = "install_failed"
		}
		e := offers[i][0].Event(id+"-e", id, typ, time.Now().UTC())
		e.Attributes = attrs(i) // cohort cells are the attributes events carry
		_, err := clients[i].SendEvents(ctx, []client.DeviceEvent{e})
		return err
	})
}

// parallel runs f for 0 … n-1, eight at a time, and fails t with the
// first error it returns.
func parallel(t testing.TB, n int, f func(i int) error) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error { return f(i) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// browserless is an HTTP client with a cookie jar that does not follow
// redirects (so tests see them).
func browserless(t testing.TB) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// signIn signs hc in with token and returns the session's anti-forgery
// token, read from a page's sign-out form.
func signIn(t testing.TB, s *server, hc *http.Client, token string) string {
	t.Helper()
	res := post(t, hc, s.url+"/ui/sign-in", url.Values{"token": {token}, "next": {"/ui/"}})
	if res.status != http.StatusSeeOther || res.header.Get("Location") != "/ui/" {
		t.Fatalf("sign-in: %d %s\n%s", res.status, res.header.Get("Location"), res.body)
	}
	page := get(t, hc, s.url+"/ui/")
	_, after, ok := strings.Cut(page.body, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no anti-forgery token on the overview:\n%s", page.body)
	}
	return after[:strings.IndexByte(after, '"')]
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, hc *http.Client, req *http.Request) response {
	t.Helper()
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b)}
}

func get(t testing.TB, hc *http.Client, u string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return do(t, hc, req)
}

// post sends a same-origin form, as a browser would.
func post(t testing.TB, hc *http.Client, u string, form url.Values, header ...string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, hc, req)
}
