package dbtest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Own is a PostgreSQL server of one test's own, started with the installed
// initdb and pg_ctl, that the test may stop, start again and freeze.
type Own struct {
	c *throwaway
	// URL is the address of its database "ringmaster".
	URL string
}

// OwnPostgres starts a server for t, stopped when t ends. Without the
// server binaries it skips loudly, or fails with RINGMASTER_REQUIRE_POSTGRES=1.
func OwnPostgres(t testing.TB) *Own {
	t.Helper()
	c, err := startThrowaway()
	if err != nil {
		msg := "POSTGRESQL TESTS SKIPPED: cannot start a server of the test's own: " + err.Error()
		if os.Getenv("RINGMASTER_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (RINGMASTER_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		c.Thaw()
		c.stop()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE ringmaster"); err != nil {
		t.Fatal(err)
	}
	return &Own{c: c, URL: strings.Replace(c.url, "/postgres?", "/ringmaster?", 1)}
}

// Stop shuts the server down (fast: connections are closed).
func (o *Own) Stop(t testing.TB) {
	t.Helper()
	if out, err := o.c.run(o.c.pgctl, "-D", filepath.Join(o.c.dir, "data"), "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v: %s", err, out)
	}
}

// Start starts a stopped server again on the same port.
func (o *Own) Start(t testing.TB) {
	t.Helper()
	if err := o.c.start(); err != nil {
		t.Fatal(err)
	}
}

// Freeze stops every process of the server with SIGSTOP: connections stay
// open and nothing answers, as with a hung host.
func (o *Own) Freeze(t testing.TB) {
	t.Helper()
	for _, pid := range o.c.pids() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
}

// Thaw resumes a frozen server.
func (o *Own) Thaw(t testing.TB) { o.c.Thaw() }

// Thaw sends SIGCONT to every process of the server.
func (c *throwaway) Thaw() {
	for _, pid := range c.pids() {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// pids returns the postmaster and its children.
func (c *throwaway) pids() []int {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil
	}
	pids := []int{postmaster}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		i := strings.LastIndexByte(string(stat), ')')
		if fields := strings.Fields(string(stat[i+1:])); len(fields) > 1 && fields[1] == strconv.Itoa(postmaster) {
			pids = append(pids, pid)
		}
	}
	return pids
}
