-- Automatic holds: a proposed status (waiting for a human) and the
-- deployment whose health evidence created the hold. Rebuilt rather than
-- altered because SQLite cannot change a CHECK constraint in place.

-- +goose Up
CREATE TABLE holds_v2 (
    id            TEXT PRIMARY KEY,
    product       TEXT NOT NULL REFERENCES products (name),
    update_id     TEXT NOT NULL DEFAULT '',
    rule          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('manual', 'automatic')),
    status        TEXT NOT NULL CHECK (status IN ('proposed', 'active', 'released')),
    deployment_id TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    released_by   TEXT NOT NULL DEFAULT '',
    released_at   TIMESTAMP
);
INSERT INTO holds_v2 (id, product, update_id, rule, reason, source, status, created_by, created_at, released_by, released_at)
    SELECT id, product, update_id, rule, reason, source, status, created_by, created_at, released_by, released_at FROM holds;
DROP TABLE holds;
ALTER TABLE holds_v2 RENAME TO holds;
CREATE INDEX holds_by_status ON holds (status);
-- One automatic hold per deployment and cohort rule.
CREATE UNIQUE INDEX holds_automatic_once ON holds (deployment_id, rule) WHERE source = 'automatic';

-- +goose Down
DROP INDEX holds_automatic_once;
DELETE FROM holds WHERE status = 'proposed';
