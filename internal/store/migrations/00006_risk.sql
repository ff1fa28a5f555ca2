-- Risk-ordered rollouts and the health gate's ambient reference.

-- +goose Up
-- Risk models trained from a product's past deployments; a risk-ordered
-- deployment pins one by id.
CREATE TABLE risk_models (
    id         TEXT PRIMARY KEY,
    product    TEXT NOT NULL REFERENCES products (name),
    model      TEXT NOT NULL,
    examples   BIGINT NOT NULL,
    failures   BIGINT NOT NULL,
    trained_at TIMESTAMP NOT NULL,
    trained_by TEXT NOT NULL
);
CREATE INDEX risk_models_product ON risk_models (product, trained_at);
-- Every other deployment's outcomes in a time window (health.AdjustForAmbient).
CREATE INDEX device_outcomes_at ON device_outcomes (at);

-- +goose Down
DROP INDEX device_outcomes_at;
DROP INDEX risk_models_product;
DROP TABLE risk_models;
