package store

import (
	"database/sql"
	"time"
)

// checkpointInterval is how often the checkpointer runs.
const checkpointInterval = 250 * time.Millisecond

// writerCheckpointPages is the writer's own autocheckpoint threshold
// (pages of write-ahead log, 160 MB: the most the log's file grows to, but
// for one transaction). A catching-up aggregator's transaction writes tens
// of megabytes of log: at 40 MB nearly every one ended in the writer's own
// checkpoint, whose fsyncs held the store's only connection for a sixth of
// the aggregator's time.
var writerCheckpointPages = 40_000 // a variable only for tests, which lower it

// checkpointer copies SQLite's write-ahead log into the database file from
// a connection of its own. With only the writer checkpointing (SQLite's
// way), the commit that crosses the threshold copies thousands of pages
// while holding the store's only connection: every few aggregator
// batches, one stalled for 200 ms. A passive checkpoint runs beside the
// writer, on the other core, and never blocks it. The writer still
// checkpoints at its threshold, because the log starts over only when a
// write begins after a complete checkpoint, which a writer that never
// pauses does not see; but by then nearly every page has been copied, and
// its checkpoint is short.
type checkpointer struct {
	db   *sql.DB
	stop chan struct{}
	done chan struct{}
}

func startCheckpointer(db *sql.DB) *checkpointer {
	c := &checkpointer{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		t := time.NewTicker(checkpointInterval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				// Busy (a checkpoint elsewhere) or failing, it tries again
				// next tick; the writer's own bounds the log meanwhile.
				_, _ = c.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			}
		}
	}()
	return c
}

func (c *checkpointer) close() error {
	close(c.stop)
	<-c.done
	return c.db.Close()
}
