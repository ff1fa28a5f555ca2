-- What the device agents that fleets already run need of a product: the
-- payload format each dialect installs (dialect -> format, e.g.
-- {"ddi": "swu"}), which turns on its validation at publish, and the app
-- id Omaha clients name it by (empty: its name).

-- +goose Up
ALTER TABLE products ADD COLUMN formats TEXT NOT NULL DEFAULT '{}';
ALTER TABLE products ADD COLUMN omaha_app_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX products_by_omaha_app_id ON products (omaha_app_id) WHERE omaha_app_id <> '';

-- +goose Down
DROP INDEX products_by_omaha_app_id;
ALTER TABLE products DROP COLUMN omaha_app_id;
ALTER TABLE products DROP COLUMN formats;
