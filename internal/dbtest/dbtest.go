// Package dbtest gives tests real databases: a fresh SQLite file, or a fresh
// PostgreSQL database on a server it finds or starts.
//
// PostgreSQL is found, in order, through RINGMASTER_TEST_POSTGRES_URL, a
// local server on 127.0.0.1:5432, or a throwaway cluster started with the
// installed initdb and pg_ctl. When none works the test is skipped with a
// loud reason, unless RINGMASTER_REQUIRE_POSTGRES=1 (as in .ci/run), which
// makes it fail.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SQLite returns the path of a new SQLite database file for t.
func SQLite(t testing.TB) string {
	return filepath.Join(t.TempDir(), "ringmaster.db")
}

// Backend is a database engine a test can run against.
type Backend struct {
	Name string
	// DSN returns the address of a fresh, empty database for t.
	DSN func(t testing.TB) string
}

// Backends returns SQLite and PostgreSQL.
func Backends() []Backend {
	return []Backend{{Name: "sqlite", DSN: SQLite}, {Name: "postgres", DSN: Postgres}}
}

var (
	once     sync.Once
	adminURL string
	findErr  error
	cluster  *throwaway
)

// Postgres returns the URL of a new, empty PostgreSQL database for t,
// dropped when t ends.
func Postgres(t testing.TB) string {
	t.Helper()
	once.Do(func() { adminURL, findErr = find() })
	if findErr != nil {
		msg := "POSTGRESQL TESTS SKIPPED: " + findErr.Error()
		if os.Getenv("RINGMASTER_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (RINGMASTER_REQUIRE_POSTGRES=1)")
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "rmtest_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, _ := url.Parse(adminURL)
	u.Path = "/" + name
	return u.String()
}

// Main runs the tests of a package that uses Postgres and then stops the
// throwaway cluster, if one was started. Use it from TestMain.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	if cluster != nil {
		cluster.stop()
	}
	return code
}

func find() (string, error) {
	if u := os.Getenv("RINGMASTER_TEST_POSTGRES_URL"); u != "" {
		if err := ping(u); err != nil {
			return "", fmt.Errorf("RINGMASTER_TEST_POSTGRES_URL does not answer: %w", err)
		}
		return u, nil
	}
	var tried []string
	for _, u := range []string{
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
	} {
		err := ping(u)
		if err == nil {
			return u, nil
		}
		tried = append(tried, err.Error())
	}
	c, err := startThrowaway()
	if err != nil {
		return "", fmt.Errorf("no PostgreSQL: local server: %s; throwaway cluster: %v", strings.Join(tried, "; "), err)
	}
	cluster = c
	return c.url, nil
}

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

type throwaway struct {
	dir, pgctl, opts string
	cred             *syscall.Credential
	url              string
}

// startThrowaway creates a cluster in a temporary directory with the
// installed server binaries. initdb refuses to run as root, so as root it
// runs as the "postgres" user.
func startThrowaway() (*throwaway, error) {
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		if len(matches) == 0 {
			return nil, fmt.Errorf("initdb not found on PATH or in /usr/lib/postgresql/*/bin")
		}
		initdb = matches[len(matches)-1]
	}
	c := &throwaway{pgctl: filepath.Join(filepath.Dir(initdb), "pg_ctl")}
	c.dir, err = os.MkdirTemp("", "ringmaster-pg-")
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		pu, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and there is no postgres user for initdb: %w", err)
		}
		uid, _ := strconv.Atoi(pu.Uid)
		gid, _ := strconv.Atoi(pu.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run(initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	c.opts = fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, c.dir)
	if err := c.start(); err != nil {
		return nil, err
	}
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c, ping(c.url)
}

func (c *throwaway) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func (c *throwaway) start() error {
	if out, err := c.run(c.pgctl, "-D", filepath.Join(c.dir, "data"), "-o", c.opts, "-l", filepath.Join(c.dir, "log"), "-w", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

func (c *throwaway) stop() {
	_, _ = c.run(c.pgctl, "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "stop")
	_ = os.RemoveAll(c.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
