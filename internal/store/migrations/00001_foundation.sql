-- One schema for SQLite and PostgreSQL: only types and syntax both accept.
-- Times are TIMESTAMP holding UTC; enums are TEXT with CHECK constraints.

-- +goose Up
CREATE TABLE products (
    name        TEXT PRIMARY KEY,
    title       TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    -- JSON array of mandatory intermediate versions, e.g. ["2.0", "3.0"].
    floors      TEXT NOT NULL DEFAULT '[]',
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
    -- JSON array of {"product", "min_version"} that must be installed.
    prerequisites  TEXT NOT NULL DEFAULT '[]',
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
    id         TEXT PRIMARY KEY,
    update_id  TEXT NOT NULL REFERENCES updates (id),
    -- state repeats status.state for queries and the constraint below.
    state      TEXT NOT NULL CHECK (state IN ('scheduled', 'running', 'paused', 'completed', 'halted', 'cancelled')),
    plan       TEXT NOT NULL, -- JSON rollout.Plan
    status     TEXT NOT NULL, -- JSON rollout.Status, owned by the controller and commands
    salt       TEXT NOT NULL, -- seeds the device order of this deployment
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- At most one live deployment per update: deploying it again is idempotent
-- (same plan) or a conflict.
CREATE UNIQUE INDEX deployments_one_live ON deployments (update_id) WHERE state NOT IN ('halted', 'cancelled');
CREATE INDEX deployments_by_state ON deployments (state);

-- What happened to each deployment, by whom and why.
CREATE TABLE deployment_events (
    id            TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    at            TIMESTAMP NOT NULL,
    seq           INTEGER NOT NULL, -- order of the deployment's events
    actor         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    wave          INTEGER NOT NULL,
    percent       DOUBLE PRECISION NOT NULL,
    detail        TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX deployment_events_by_deployment ON deployment_events (deployment_id, seq);

CREATE TABLE rings (
    name        TEXT PRIMARY KEY,
    rank        INTEGER NOT NULL,
    rule        TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE ring_members (
    ring      TEXT NOT NULL REFERENCES rings (name),
    device_id TEXT NOT NULL,
    PRIMARY KEY (ring, device_id)
);

CREATE TABLE holds (
    id          TEXT PRIMARY KEY,
    product     TEXT NOT NULL REFERENCES products (name),
    update_id   TEXT NOT NULL DEFAULT '', -- empty: every update of the product
    rule        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('manual', 'automatic')),
    status      TEXT NOT NULL CHECK (status IN ('active', 'released')),
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    released_by TEXT NOT NULL DEFAULT '',
    released_at TIMESTAMP
);
CREATE INDEX holds_by_status ON holds (status);

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
DROP TABLE holds;
DROP TABLE ring_members;
DROP TABLE rings;
DROP TABLE deployment_events;
DROP TABLE deployments;
DROP TABLE payloads;
DROP TABLE updates;
DROP TABLE products;
