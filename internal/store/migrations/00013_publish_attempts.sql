-- A failed publish can be retried: each attempt's pipeline jobs are
-- unique by their arguments, which now carry the attempt, so a retry is
-- new work and not a duplicate of the completed jobs that failed.

-- +goose Up
ALTER TABLE updates ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE updates DROP COLUMN attempt;
