package store

import (
	"context"
	"log/slog"
	"time"
)

// CatalogChannel is the PostgreSQL notification channel on which every
// change to what devices are offered, or to the TUF metadata, is announced.
const CatalogChannel = "ringmaster_catalog"

// ListenCatalog calls changed whenever another replica (or this one)
// commits a change announced on CatalogChannel, until ctx ends. On SQLite,
// where one process owns the database, it returns at once. A lost
// connection is re-established with backoff (callers keep polling as the
// fallback), and changed is called after each reconnect, since a change
// may have been missed meanwhile.
func (s *Store) ListenCatalog(ctx context.Context, log *slog.Logger, changed func()) {
	if s.pool == nil {
		return
	}
	wait := time.Second
	for ctx.Err() == nil {
		err := s.listen(ctx, changed, func() { wait = time.Second })
		if ctx.Err() != nil {
			return
		}
		log.Warn("catalog notifications lost; polling meanwhile", "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (s *Store) listen(ctx context.Context, changed, connected func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+CatalogChannel); err != nil {
		return err
	}
	connected()
	changed()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			conn.Conn().Close(context.Background()) // not back to the pool still listening
			return err
		}
		changed()
	}
}
