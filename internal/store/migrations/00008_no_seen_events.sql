-- Every event id ever counted was kept to skip redelivered events, one row
-- per event forever (billions a day at a large fleet's rate). The device
-- outcome key already makes a redelivered or resent event count nothing.

-- +goose Up
DROP TABLE seen_events;

-- +goose Down
CREATE TABLE seen_events (
    event_id    TEXT PRIMARY KEY,
    received_at TIMESTAMP NOT NULL
);
