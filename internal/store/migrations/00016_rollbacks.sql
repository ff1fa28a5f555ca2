-- A rollback is a deployment of an earlier version offered only to the
-- devices that installed a bad one. An update may then have two live
-- deployments: its own, and one rollback per bad deployment.

-- +goose Up
ALTER TABLE deployments ADD COLUMN rollback_of TEXT;
DROP INDEX deployments_one_live;
CREATE UNIQUE INDEX deployments_one_live ON deployments (update_id) WHERE state NOT IN ('halted', 'cancelled') AND rollback_of IS NULL;
CREATE UNIQUE INDEX deployments_one_live_rollback ON deployments (update_id, rollback_of) WHERE state NOT IN ('halted', 'cancelled') AND rollback_of IS NOT NULL;

-- +goose Down
DROP INDEX deployments_one_live_rollback;
DROP INDEX deployments_one_live;
CREATE UNIQUE INDEX deployments_one_live ON deployments (update_id) WHERE state NOT IN ('halted', 'cancelled');
ALTER TABLE deployments DROP COLUMN rollback_of;
