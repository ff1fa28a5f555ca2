-- Devices that authenticate through the Mender device API: the identity
-- and public key of their latest authentication request, and whether it
-- is accepted (by an enrollment key sent as tenant_token, or by an admin)
-- or awaits an admin. A device reset forgets the row.

-- +goose Up
CREATE TABLE mender_devices (
    device_id    TEXT PRIMARY KEY,
    identity     TEXT NOT NULL,
    pubkey       TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'accepted')),
    requested_at TIMESTAMP NOT NULL,
    decided_at   TIMESTAMP,
    decided_by   TEXT
);
CREATE INDEX mender_devices_by_status ON mender_devices (status);

-- +goose Down
DROP INDEX mender_devices_by_status;
DROP TABLE mender_devices;
