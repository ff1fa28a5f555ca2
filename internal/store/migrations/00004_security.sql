-- Security: token roles and product scopes, the hash-chained audit log,
-- device enrollment and revocation, server secrets, and TUF metadata.
-- tokens is rebuilt rather than altered because SQLite cannot change a
-- CHECK constraint in place.

-- +goose Up
CREATE TABLE tokens_v2 (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'release_manager', 'viewer', 'agent')),
    products   TEXT NOT NULL DEFAULT '[]',
    created_by TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO tokens_v2 (id, name, hash, role, created_at, expires_at, revoked_at)
    SELECT id, name, hash, role, created_at, expires_at, revoked_at FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v2 RENAME TO tokens;

-- Append-only and hash-chained: hash = SHA-256(prev_hash || canonical entry).
-- audit_head holds the chain's end, so deleting the newest rows is detected
-- too; it is also the lock that serializes appends.
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    at           TIMESTAMP NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    before_state TEXT NOT NULL,
    after_state  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_log_by_target ON audit_log (target);
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Enrollment keys let devices obtain a device credential.
CREATE TABLE enrollment_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);

CREATE TABLE device_revocations (
    device_id  TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    revoked_at TIMESTAMP NOT NULL
);

-- Random server secrets created on first use (the device credential key).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Every version of every TUF role, as served.
CREATE TABLE tuf_metadata (
    role       TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (role, version)
);
-- Serializes signing across replicas; generation bumps with every change.
CREATE TABLE tuf_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL
);
INSERT INTO tuf_state (id, generation) VALUES (1, 0);

-- +goose Down
DROP TABLE tuf_state;
DROP TABLE tuf_metadata;
DROP TABLE server_secrets;
DROP TABLE device_revocations;
DROP TABLE enrollment_keys;
DROP TABLE audit_head;
DROP TABLE audit_log;
CREATE TABLE tokens_v1 (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin')),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO tokens_v1 (id, name, hash, role, created_at, expires_at, revoked_at)
    SELECT id, name, hash, role, created_at, expires_at, revoked_at FROM tokens WHERE role = 'admin';
DROP TABLE tokens;
ALTER TABLE tokens_v1 RENAME TO tokens;
