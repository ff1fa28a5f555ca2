-- One schema for SQLite and PostgreSQL: only types and syntax both accept.
-- Times are TIMESTAMP holding UTC; enums are TEXT with CHECK constraints.

-- +goose Up
CREATE TABLE products (
    name        TEXT PRIMARY KEY,
    title       TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE updates (
    id             TEXT PRIMARY KEY,
    product        TEXT NOT NULL REFERENCES products (name),
    version        TEXT NOT NULL,
    version_key    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('security', 'quality', 'feature', 'driver', 'app', 'model')),
    classification TEXT NOT NULL DEFAULT '',
    severity       TEXT NOT NULL CHECK (severity IN ('none', 'low', 'moderate', 'important', 'critical')),
    title          TEXT NOT NULL DEFAULT '',
    release_notes  TEXT NOT NULL DEFAULT '',
    applicability  TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('awaiting_upload', 'publishing', 'published', 'failed')),
    failure_reason TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMP NOT NULL,
    published_at   TIMESTAMP,
    UNIQUE (product, version_key)
);

CREATE TABLE payloads (
    update_id TEXT NOT NULL REFERENCES updates (id),
    position  INTEGER NOT NULL,
    name      TEXT NOT NULL,
    sha256    TEXT NOT NULL,
    size      BIGINT NOT NULL CHECK (size > 0),
    state     TEXT NOT NULL CHECK (state IN ('pending', 'uploaded', 'stored')),
    PRIMARY KEY (update_id, sha256),
    UNIQUE (update_id, name)
);
CREATE INDEX payloads_by_sha256 ON payloads (sha256);

CREATE TABLE deployments (
    id           TEXT PRIMARY KEY,
    update_id    TEXT NOT NULL REFERENCES updates (id),
    state        TEXT NOT NULL CHECK (state IN ('running', 'cancelled')),
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    cancelled_at TIMESTAMP,
    reason       TEXT NOT NULL DEFAULT ''
);
-- At most one running deployment per update: "deploy" twice is idempotent.
CREATE UNIQUE INDEX deployments_one_running ON deployments (update_id) WHERE state = 'running';

CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin')),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    installed  TEXT NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen  TIMESTAMP NOT NULL,
    checkins   BIGINT NOT NULL
);

-- Bumped in every transaction that changes what devices are offered, so
-- every replica knows when to rebuild its snapshot.
CREATE TABLE catalog_generation (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO catalog_generation (id, generation) VALUES (1, 0);

-- +goose Down
DROP TABLE catalog_generation;
DROP TABLE devices;
DROP TABLE tokens;
DROP TABLE deployments;
DROP TABLE payloads;
DROP TABLE updates;
DROP TABLE products;
