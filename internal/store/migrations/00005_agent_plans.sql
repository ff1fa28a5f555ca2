-- Agents: a blast-radius budget per token (devices newly exposed per day
-- and deployment), the plans agents made (applied ones count against the
-- budget), and approval requests for plans beyond it.

-- +goose Up
ALTER TABLE tokens ADD COLUMN budget BIGINT NOT NULL DEFAULT 0;
CREATE TABLE agent_plans (
    hash        TEXT PRIMARY KEY,
    token_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    body        TEXT NOT NULL,
    exposure    BIGINT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    applied_at  TIMESTAMP
);
CREATE INDEX agent_plans_by_token ON agent_plans (token_id, target, applied_at);
CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    plan_hash   TEXT NOT NULL UNIQUE REFERENCES agent_plans (hash),
    token_id    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'applied', 'failed')),
    reason      TEXT NOT NULL,
    result      TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    decided_by  TEXT NOT NULL DEFAULT '',
    decided_at  TIMESTAMP
);

-- +goose Down
DROP TABLE approvals;
DROP TABLE agent_plans;
ALTER TABLE tokens DROP COLUMN budget;
