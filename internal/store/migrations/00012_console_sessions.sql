-- Console sessions: the hash of each signed-in browser's cookie secret,
-- its anti-forgery token and who it acts as. A session made with an API
-- token names the token (its role and scope are read afresh on every
-- request); one made through OIDC carries the subject, role and products
-- its identity provider's groups mapped to.

-- +goose Up
CREATE TABLE console_sessions (
    hash       TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    token_id   TEXT NOT NULL DEFAULT '',
    subject    TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    products   TEXT NOT NULL DEFAULT '[]',
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- +goose Down
DROP TABLE console_sessions;
