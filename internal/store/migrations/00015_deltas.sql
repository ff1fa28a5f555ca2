-- Deltas: for a payload of an update (to) and the payload of the same name
-- of an earlier published version (from), a zstd patch-from delta stored
-- as a content blob and signed as a TUF target. A pair whose delta was not
-- small enough is recorded as skipped, so it is not made again.

-- +goose Up
CREATE TABLE deltas (
    to_update_id   TEXT NOT NULL REFERENCES updates (id),
    from_update_id TEXT NOT NULL REFERENCES updates (id),
    name           TEXT NOT NULL,
    from_sha256    TEXT NOT NULL,
    to_sha256      TEXT NOT NULL,
    sha256         TEXT NOT NULL DEFAULT '',
    size           BIGINT NOT NULL DEFAULT 0,
    state          TEXT NOT NULL CHECK (state IN ('ready', 'skipped')),
    note           TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (to_update_id, from_update_id, name)
);
CREATE INDEX deltas_by_from ON deltas (from_update_id);
CREATE INDEX deltas_by_sha256 ON deltas (sha256);

-- +goose Down
DROP TABLE deltas;
