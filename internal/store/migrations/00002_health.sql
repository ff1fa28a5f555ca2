-- Release health: what devices reported, counted exactly once.

-- +goose Up
-- Every event id ever counted: a redelivered or resent event is skipped.
CREATE TABLE seen_events (
    event_id    TEXT PRIMARY KEY,
    received_at TIMESTAMP NOT NULL
);

-- Each device counts once per outcome of a deployment.
CREATE TABLE device_outcomes (
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    device_id     TEXT NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('offered', 'download_started', 'download_completed', 'download_failed',
                                      'install_started', 'install_succeeded', 'install_failed', 'rolled_back', 'post_install_crash')),
    wave          INTEGER NOT NULL,
    at            TIMESTAMP NOT NULL,
    PRIMARY KEY (deployment_id, device_id, outcome)
);

-- Devices per (deployment, wave, outcome, cohort cell); cell '' is everyone.
CREATE TABLE health_counts (
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    wave          INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    cell          TEXT NOT NULL,
    devices       BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, wave, outcome, cell)
);

-- The values admitted per cohort attribute (the rest count as "other").
CREATE TABLE cohort_values (
    attribute TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (attribute, value)
);

-- +goose Down
DROP TABLE cohort_values;
DROP TABLE health_counts;
DROP TABLE device_outcomes;
DROP TABLE seen_events;
