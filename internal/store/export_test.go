package store

import "context"

// RebuildInstallHours empties install_hours and fills it again from
// device_outcomes, as its migration does for a database counted before it.
func (s *Store) RebuildInstallHours(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM install_hours`); err != nil {
		return err
	}
	if err := backfillInstallHours(ctx, tx, `SELECT dn.deployment_id, `+outcomeCase("o.outcome", false)+`, o.at FROM device_outcomes o
		JOIN deployment_numbers dn ON dn.number = o.deployment WHERE o.outcome IN `+installCodes); err != nil {
		return err
	}
	return tx.Commit()
}

// Remigrate takes the schema down to version and up again, data and all.
func (s *Store) Remigrate(ctx context.Context, version int64) error {
	p, err := s.migrations()
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, version); err != nil {
		return err
	}
	// Down past migration 23 the numbers go, and up again they are made
	// anew: what is remembered is of the old tables.
	s.committed = newCommitted()
	_, err = p.Up(ctx)
	return err
}

// Exec runs a statement on the store's connection.
func (s *Store) Exec(ctx context.Context, query string) error {
	_, err := s.db.ExecContext(ctx, query)
	return err
}

// SetWriterCheckpointPages sets the writer's checkpoint threshold of the
// SQLite stores opened until restore is called.
func SetWriterCheckpointPages(pages int) (restore func()) {
	was := writerCheckpointPages
	writerCheckpointPages = pages
	return func() { writerCheckpointPages = was }
}
