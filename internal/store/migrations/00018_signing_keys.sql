-- TUF signing keys shared by every replica: each sealed with the key
-- passphrase exactly as a key file is, so the database holds ciphertext.

-- +goose Up
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    sealed     TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- +goose Down
DROP TABLE signing_keys;
