-- Evidence that cannot be forged: the server's record of every offer it
-- made (exposure), one enrollment per device id with credential
-- generations an admin reset advances, and enrollment key quotas.

-- +goose Up
-- The first offer of a deployment's update to a device, and the wave whose
-- share first included it. Written in batches off the check-in path, and
-- re-derived from the signed offer receipt a device cites in its events.
CREATE TABLE offers (
    deployment_id TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    wave          INTEGER NOT NULL CHECK (wave >= 0),
    offered_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (deployment_id, device_id)
);
CREATE INDEX offers_by_wave ON offers (deployment_id, wave);

-- A device id is enrolled once per credential generation. A reset starts
-- the next generation (refusing earlier credentials) and lets the device
-- enroll again, with any valid key.
CREATE TABLE device_enrollments (
    device_id         TEXT PRIMARY KEY,
    generation        BIGINT NOT NULL CHECK (generation >= 0),
    enrollment_key_id TEXT,
    enrolled_at       TIMESTAMP,
    reset_at          TIMESTAMP,
    reset_by          TEXT,
    reset_reason      TEXT
);
CREATE INDEX device_enrollments_reset ON device_enrollments (generation);

ALTER TABLE enrollment_keys ADD COLUMN max_devices BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrollment_keys ADD COLUMN enrolled BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE enrollment_keys DROP COLUMN enrolled;
ALTER TABLE enrollment_keys DROP COLUMN max_devices;
DROP INDEX device_enrollments_reset;
DROP TABLE device_enrollments;
DROP INDEX offers_by_wave;
DROP TABLE offers;
