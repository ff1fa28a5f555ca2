-- Verdicts of the pipeline steps an organisation adds (a malware scan, a
-- webhook): one row per update, publish attempt and step.

-- +goose Up
CREATE TABLE update_checks (
    update_id  TEXT NOT NULL REFERENCES updates (id),
    attempt    INTEGER NOT NULL,
    step       TEXT NOT NULL,
    verdict    TEXT NOT NULL CHECK (verdict IN ('pass', 'fail')),
    output     TEXT NOT NULL,
    checked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (update_id, attempt, step)
);

-- +goose Down
DROP TABLE update_checks;
