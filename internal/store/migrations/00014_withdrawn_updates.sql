-- A published update can be withdrawn: offered to no device and removed
-- from the signed TUF targets. Its state column stays 'published' (its
-- CHECK constraint cannot change on SQLite without rebuilding a table
-- others reference); withdrawn_at set means withdrawn.

-- +goose Up
ALTER TABLE updates ADD COLUMN withdrawn_at TIMESTAMP;
ALTER TABLE updates ADD COLUMN withdraw_reason TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE updates DROP COLUMN withdraw_reason;
ALTER TABLE updates DROP COLUMN withdrawn_at;
