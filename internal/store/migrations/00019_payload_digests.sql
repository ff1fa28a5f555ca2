-- SHA-1 and MD5 of each stored payload, computed at ingest: the update
-- protocols of device agents that fleets already run name payloads by
-- them (Omaha's SHA-1, hawkBit DDI's sha1 and md5). Integrity still
-- rests on the SHA-256 and the signed TUF metadata.

-- +goose Up
ALTER TABLE payloads ADD COLUMN sha1 TEXT NOT NULL DEFAULT '';
ALTER TABLE payloads ADD COLUMN md5 TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE payloads DROP COLUMN md5;
ALTER TABLE payloads DROP COLUMN sha1;
