// Package store keeps Ringmaster's state in SQLite (the embedded default) or
// PostgreSQL, through one implementation over database/sql, one embedded set
// of migrations and River's job tables on the same database.
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/ringmaster/ringmaster/internal/failpoint"
	"github.com/ringmaster/ringmaster/internal/fault"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialect names the database engine behind a Store.
type Dialect string

const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store is Ringmaster's state. It is safe for concurrent use.
type Store struct {
	queries
	db   *sql.DB
	pool *pgxpool.Pool // PostgreSQL only: River's LISTEN connections
	// checkpoints copies SQLite's write-ahead log into its database file.
	checkpoints *checkpointer
	dialect     Dialect
	// failpoints stop named steps for crash tests.
	failpoints failpoint.Set
	// committed remembers what RecordEvents committed.
	committed committed
	closeOnce sync.Once
	closeErr  error
}

// Options tune Open.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxConns bounds the PostgreSQL pool (default 20). SQLite always uses one
	// connection: it has one writer, and River's SQLite driver requires it.
	MaxConns int32
	// Failpoints, for crash tests: "aggregate-uncommitted" stops
	// RecordEvents inside its transaction, with part of a batch written.
	Failpoints failpoint.Set
}

// Open connects to dsn and applies all migrations (Ringmaster's and River's).
// dsn is "postgres://..." / "postgresql://..." for PostgreSQL, or a file path
// or "sqlite://PATH" for SQLite.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var s *Store
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err = openPostgres(ctx, dsn, opts)
	} else {
		s, err = openSQLite(strings.TrimPrefix(dsn, "sqlite://"))
	}
	if err != nil {
		return nil, err
	}
	s.queries = queries{db: s.db, dialect: s.dialect, now: func() time.Time { return opts.Now().UTC().Truncate(time.Microsecond) }}
	s.failpoints = opts.Failpoints
	s.committed = newCommitted()
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func openSQLite(path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	// Create the file private: the WAL and shared-memory files follow its mode.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "foreign_keys(1)", "synchronous(NORMAL)", "temp_store(MEMORY)", "cache_size(-65536)",
		fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages)} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	cdb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	cdb.SetMaxOpenConns(1)
	// One connection: SQLite has a single writer, and River's SQLite driver
	// needs this to avoid SQLITE_BUSY. Code must never use the pool while it
	// holds a transaction (it would wait for itself).
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	return &Store{db: db, dialect: SQLite, checkpoints: startCheckpointer(cdb)}, nil
}

func openPostgres(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 20
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Store{db: stdlib.OpenDBFromPool(pool), pool: pool, dialect: Postgres}, nil
}

// migrations returns the schema's migrations for this engine.
func (s *Store) migrations() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	if s.dialect == Postgres {
		dialect = goose.DialectPostgres
	}
	p, err := goose.NewProvider(dialect, s.db, fsys, goose.WithGoMigrations(installHoursMigration(), clusteredCountsMigration(s.dialect), inventoryMigration(s.dialect), outcomeNumbersMigration(s.dialect)))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

func (s *Store) migrate(ctx context.Context) error {
	p, err := s.migrations()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	m, err := rivermigrate.New(s.RiverDriver(), nil)
	if err != nil {
		return fmt.Errorf("load job queue migrations: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("apply job queue migrations: %w", err)
	}
	return nil
}

// RiverDriver returns the River driver for this database, sharing its pool,
// so jobs can be enqueued in the same transaction as the state they follow.
func (s *Store) RiverDriver() riverdriver.Driver[*sql.Tx] {
	if s.dialect == Postgres {
		return riverdatabasesql.NewWithPgxListener(s.db, s.pool)
	}
	return riversqlite.New(s.db)
}

// Dialect reports the database engine.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close releases the database; closing it again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.checkpoints != nil {
			s.closeErr = s.checkpoints.close()
		}
		s.closeErr = errors.Join(s.closeErr, s.db.Close())
		if s.pool != nil {
			s.pool.Close()
		}
	})
	return s.closeErr
}

// JobCounts counts the job queue's jobs by state (available, scheduled,
// running, retryable, completed, discarded, cancelled).
func (q *queries) JobCounts(ctx context.Context) (map[string]int64, error) {
	return queryCounts[string](ctx, q.db, `SELECT state, COUNT(*) FROM river_job GROUP BY state`)
}

// Tx is a transaction: every query method of Store, plus SQL for enqueuing
// jobs in the same transaction.
type Tx struct {
	queries
	tx *sql.Tx
}

// SQL returns the underlying transaction, for River's InsertTx and
// JobCompleteTx.
func (t *Tx) SQL() *sql.Tx { return t.tx }

// InTx runs fn in a transaction, committing if it returns nil.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable(err)
	}
	if err := fn(&Tx{queries: queries{db: tx, dialect: s.dialect, now: s.now}, tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return unavailable(err)
	}
	return nil
}

// dbtx is what queries need: a pool or a transaction.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// queries holds every statement; Store runs them on the pool, Tx in a
// transaction.
type queries struct {
	db      dbtx
	dialect Dialect
	now     func() time.Time
}

// placeholders writes n parameter markers for a row starting at parameter
// first+1: "$1, $2" on PostgreSQL, "?, ?" on SQLite (which looks "$N" names
// up linearly, quadratic in a long multi-row statement).
func (q *queries) placeholders(sb *strings.Builder, first, n int) {
	for i := 1; i <= n; i++ {
		if i > 1 {
			sb.WriteString(", ")
		}
		if q.dialect == Postgres {
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(first + i))
		} else {
			sb.WriteByte('?')
		}
	}
}

// isUniqueViolation reports whether err is a unique-constraint violation on
// either engine.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// unavailable classifies a database failure that is not the caller's fault.
func unavailable(err error) error {
	if err == nil || fault.KindOf(err) != fault.Internal {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fault.Wrap(err, fault.Unavailable, "database unavailable")
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC()
}

func timePtr(nt sql.NullTime) *time.Time {
	if !nt.Valid {
		return nil
	}
	t := nt.Time.UTC()
	return &t
}

// jsonText encodes v for a TEXT column holding JSON.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with types that always encode
	}
	return string(b)
}

// fromJSON decodes a TEXT column holding JSON.
func fromJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("stored JSON does not decode: %w", err)
	}
	return nil
}

func orEmptySlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// inList returns "col IN ($n, …)" for vals, appending them to args.
func inList[T any](col string, vals []T, args *[]any) string {
	ph := make([]string, len(vals))
	for i, v := range vals {
		*args = append(*args, v)
		ph[i] = "$" + strconv.Itoa(len(*args))
	}
	return col + " IN (" + strings.Join(ph, ", ") + ")"
}
