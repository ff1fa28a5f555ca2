// Package apptest starts a real Ringmaster server for tests: on
// 127.0.0.1:0, with the database they give (SQLite in a temporary data
// directory by default), settings tuned so tests do not wait, and the
// first admin token read from where the server writes it.
package apptest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/config"
)

// Server is a running server.
type Server struct {
	*app.App
	URL, Data, Token string
	// Admin calls the API with the first admin token.
	Admin *client.Client
}

// Start starts a server on dsn ("" for SQLite in its data directory) after
// mut adjusts its configuration; it stops when the test ends.
func Start(t testing.TB, dsn string, mut func(*config.Config)) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Database = dsn
	cfg.RegistryFlush = 50 * time.Millisecond
	cfg.JobPoll = 50 * time.Millisecond
	cfg.RolloutTick = time.Second
	// One test process plays a whole fleet from 127.0.0.1 with one
	// enrollment key; tests of the per-source and per-key limits set them
	// themselves.
	cfg.SourceRate.Rate = 0
	cfg.EnrollRate.Rate = 0
	if mut != nil {
		mut(&cfg)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run: %v", err)
		}
	})
	s := &Server{App: a, URL: "http://" + a.Addr(), Data: cfg.DataDir}
	tokPath := filepath.Join(cfg.DataDir, app.AdminTokenFile)
	fi, err := os.Stat(tokPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v", err, fi.Mode())
	}
	b, _ := os.ReadFile(tokPath)
	s.Token = strings.TrimSpace(string(b))
	s.Admin, _ = client.New(s.URL, s.Token)
	return s
}

// testWriter sends the server's log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// WaitFor polls cond every 50 ms until it holds, failing the test after
// limit.
func WaitFor(t testing.TB, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Publish publishes content as the one file of product's version through
// admin (any replica's admin client), waiting until it is published.
func Publish(t testing.TB, admin *client.Client, product, version, content string) client.Update {
	t.Helper()
	file := filepath.Join(t.TempDir(), product+".bin")
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := admin.PublishFiles(context.Background(), client.NewUpdate{Product: product, Version: version}, []string{file},
		client.PublishOptions{Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("publish %s %s: %v", product, version, err)
	}
	return u
}
