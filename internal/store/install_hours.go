package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/ringmaster/ringmaster/internal/health"
)

// installHoursMigration creates install_hours, the hourly rollup of every
// deployment's install outcomes that the health gate's ambient reference
// reads (HourlyInstalls), and fills it from the device outcomes counted
// before it existed. It is Go rather than SQL because the hour of a
// timestamp is written differently on each engine.
func installHoursMigration() *goose.Migration {
	return goose.NewGoMigration(9, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE install_hours (
			deployment_id TEXT NOT NULL,
			hour          BIGINT NOT NULL,
			failed        BIGINT NOT NULL,
			installs      BIGINT NOT NULL,
			PRIMARY KEY (deployment_id, hour)
		)`); err != nil {
			return fmt.Errorf("create install_hours: %w", err)
		}
		return backfillInstallHours(ctx, tx, `SELECT deployment_id, outcome, at FROM device_outcomes WHERE outcome IN `+installOutcomes)
	}}, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DROP TABLE install_hours`)
		return err
	}})
}

// backfillInstallHours fills install_hours from device outcomes: query
// returns each install outcome's deployment id, outcome name and time
// (device_outcomes had names, not numbers, when install_hours came).
func backfillInstallHours(ctx context.Context, tx *sql.Tx, query string) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	type key struct {
		dep  string
		hour int64
	}
	hours := map[key]health.Installs{}
	for rows.Next() {
		var dep, outcome string
		var at time.Time
		if err := rows.Scan(&dep, &outcome, &at); err != nil {
			rows.Close()
			return err
		}
		k := key{dep, health.HourOf(at)}
		in := hours[k]
		in.Of++
		if outcome != "install_succeeded" {
			in.Failed++
		}
		hours[k] = in
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for k, in := range hours {
		if _, err := tx.ExecContext(ctx, `INSERT INTO install_hours (deployment_id, hour, failed, installs) VALUES ($1, $2, $3, $4)`,
			k.dep, k.hour, in.Failed, in.Of); err != nil {
			return err
		}
	}
	return nil
}

// clusteredCountsMigration rebuilds, on SQLite, the counters the
// aggregator upserts in every batch as WITHOUT ROWID tables clustered on
// their primary keys: an upsert then finds and updates one b-tree entry,
// not a key index entry and then its rowid row. (Clustering the per-event
// tables, device_outcomes and offers, made their appends slower: their
// rows are large and arrive in random key order.) PostgreSQL keeps them as
// they are.
func clusteredCountsMigration(dialect Dialect) *goose.Migration {
	tables := []struct{ name, columns, copy, indexes string }{
		{"health_counts", `deployment_id TEXT NOT NULL REFERENCES deployments (id),
			wave          INTEGER NOT NULL,
			outcome       TEXT NOT NULL,
			cell          TEXT NOT NULL,
			devices       BIGINT NOT NULL,
			PRIMARY KEY (deployment_id, wave, outcome, cell)`, "deployment_id, wave, outcome, cell, devices", ""},
		{"install_hours", `deployment_id TEXT NOT NULL,
			hour          BIGINT NOT NULL,
			failed        BIGINT NOT NULL,
			installs      BIGINT NOT NULL,
			PRIMARY KEY (deployment_id, hour)`, "deployment_id, hour, failed, installs", ""},
	}
	rebuild := func(without string) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			if dialect != SQLite {
				return nil
			}
			for _, t := range tables {
				for _, stmt := range []string{
					`CREATE TABLE ` + t.name + `_rebuilt (` + t.columns + `)` + without,
					`INSERT INTO ` + t.name + `_rebuilt (` + t.copy + `) SELECT ` + t.copy + ` FROM ` + t.name,
					`DROP TABLE ` + t.name,
					`ALTER TABLE ` + t.name + `_rebuilt RENAME TO ` + t.name,
					t.indexes,
				} {
					if stmt == "" {
						continue
					}
					if _, err := tx.ExecContext(ctx, stmt); err != nil {
						return fmt.Errorf("rebuild %s: %w", t.name, err)
					}
				}
			}
			return nil
		}
	}
	return goose.NewGoMigration(10, &goose.GoFunc{RunTx: rebuild(" WITHOUT ROWID")}, &goose.GoFunc{RunTx: rebuild("")})
}
