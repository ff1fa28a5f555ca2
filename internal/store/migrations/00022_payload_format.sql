-- What publish read from a payload of a format its product declares (a
-- Mender artifact's name and device types, whether a .swu is signed), as
-- JSON; '' for payloads read as opaque files.

-- +goose Up
ALTER TABLE payloads ADD COLUMN format_info TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE payloads DROP COLUMN format_info;
