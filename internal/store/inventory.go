package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/ringmaster/ringmaster/internal/registry"
)

// The device inventory: what every device reports of itself (attributes)
// and has installed (a version per product), one row per value, indexed
// by value, so a fleet of millions can be listed by product, version and
// attribute a page at a time, and counted by version, without reading
// every device's JSON. devices keeps the JSON as the source of truth;
// these rows follow it in the same transaction.

// inventoryMigration creates the inventory tables and fills them from the
// devices registered before them. Go rather than SQL because each engine
// reads JSON its own way (the rows are parsed here instead).
func inventoryMigration(dialect Dialect) *goose.Migration {
	return goose.NewGoMigration(11, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		for _, stmt := range []string{
			`CREATE TABLE device_versions (
				device_id TEXT NOT NULL,
				product   TEXT NOT NULL,
				version   TEXT NOT NULL,
				PRIMARY KEY (device_id, product)
			)`,
			`CREATE INDEX device_versions_by_version ON device_versions (product, version, device_id)`,
			`CREATE INDEX device_versions_by_product ON device_versions (product, device_id)`,
			`CREATE TABLE device_attributes (
				device_id TEXT NOT NULL,
				name      TEXT NOT NULL,
				value     TEXT NOT NULL,
				PRIMARY KEY (device_id, name)
			)`,
			`CREATE INDEX device_attributes_by_value ON device_attributes (name, value, device_id)`,
			`CREATE INDEX devices_by_last_seen ON devices (last_seen)`,
			`CREATE TABLE product_versions (
				product TEXT NOT NULL,
				version TEXT NOT NULL,
				devices BIGINT NOT NULL,
				PRIMARY KEY (product, version)
			)`,
		} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create the device inventory: %w", err)
			}
		}
		q := queries{db: tx, dialect: dialect}
		// A page of devices at a time: a registry of millions is not held
		// in memory at once.
		for after := ""; ; {
			devices, err := q.registryPage(ctx, after, 5000)
			if err != nil || len(devices) == 0 {
				return err
			}
			if err := q.reindex(ctx, devices); err != nil {
				return err
			}
			after = devices[len(devices)-1].ID
		}
	}}, &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		for _, stmt := range []string{`DROP TABLE product_versions`, `DROP INDEX devices_by_last_seen`, `DROP TABLE device_attributes`, `DROP TABLE device_versions`} {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	}})
}

// registryPage reads up to n devices' attributes and installed versions
// from the registry, in id order after after.
func (q *queries) registryPage(ctx context.Context, after string, n int) ([]registry.Device, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, attributes, installed FROM devices WHERE id > $1 ORDER BY id LIMIT $2`, after, n)
	if err != nil {
		return nil, err
	}
	return readDevices(rows)
}

// readDevices reads and closes rows of (id, attributes, installed). A
// device whose JSON does not parse comes without them (it is indexed
// and matched by rules again when it next checks in).
func readDevices(rows *sql.Rows) ([]registry.Device, error) {
	defer rows.Close()
	var out []registry.Device
	for rows.Next() {
		var d registry.Device
		var attrs, inst string
		if err := rows.Scan(&d.ID, &attrs, &inst); err != nil {
			return nil, unavailable(err)
		}
		if json.Unmarshal([]byte(attrs), &d.Attributes) != nil || json.Unmarshal([]byte(inst), &d.Installed) != nil {
			d.Attributes, d.Installed = nil, nil
		}
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}

// inventoryIDsPerStatement bounds the ids of one DELETE ... IN (...).
const inventoryIDsPerStatement = 500

// reindex replaces the inventory rows of devices with what they hold now,
// and moves them between the version counts, in device and key order
// (concurrent replicas lock rows in one order).
func (q *queries) reindex(ctx context.Context, devices []registry.Device) error {
	if len(devices) == 0 {
		return nil
	}
	devices = slices.SortedFunc(slices.Values(devices), func(a, b registry.Device) int { return strings.Compare(a.ID, b.ID) })
	type productVersion struct{ product, version string }
	moved := map[productVersion]int64{}
	for rest := devices; len(rest) > 0; {
		chunk := rest[:min(len(rest), inventoryIDsPerStatement)]
		rest = rest[len(chunk):]
		ids := make([]any, len(chunk))
		var sb strings.Builder
		for i, d := range chunk {
			ids[i] = d.ID
		}
		q.placeholders(&sb, 0, len(ids))
		if _, err := q.db.ExecContext(ctx, `DELETE FROM device_attributes WHERE device_id IN (`+sb.String()+`)`, ids...); err != nil {
			return unavailable(err)
		}
		rows, err := q.db.QueryContext(ctx, `DELETE FROM device_versions WHERE device_id IN (`+sb.String()+`) RETURNING product, version`, ids...)
		if err != nil {
			return unavailable(err)
		}
		for rows.Next() {
			var pv productVersion
			if err := rows.Scan(&pv.product, &pv.version); err != nil {
				rows.Close()
				return unavailable(err)
			}
			moved[pv]--
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return unavailable(err)
		}
	}
	var versions, attributes []any
	for _, d := range devices {
		for _, p := range slices.Sorted(maps.Keys(d.Installed)) {
			versions = append(versions, d.ID, p, d.Installed[p])
			moved[productVersion{p, d.Installed[p]}]++
		}
		for _, k := range slices.Sorted(maps.Keys(d.Attributes)) {
			attributes = append(attributes, d.ID, k, d.Attributes[k])
		}
	}
	if err := q.writeRows(ctx, `INSERT INTO device_versions (device_id, product, version)`, 3, versions, ``, nil); err != nil {
		return err
	}
	if err := q.writeRows(ctx, `INSERT INTO device_attributes (device_id, name, value)`, 3, attributes, ``, nil); err != nil {
		return err
	}
	var counts []any
	for _, pv := range slices.SortedFunc(maps.Keys(moved), func(a, b productVersion) int {
		return cmp.Or(strings.Compare(a.product, b.product), strings.Compare(a.version, b.version))
	}) {
		if n := moved[pv]; n != 0 {
			counts = append(counts, pv.product, pv.version, n)
		}
	}
	if len(counts) == 0 {
		return nil
	}
	if err := q.writeRows(ctx, `INSERT INTO product_versions (product, version, devices)`, 3, counts,
		` ON CONFLICT (product, version) DO UPDATE SET devices = product_versions.devices + excluded.devices`, nil); err != nil {
		return err
	}
	_, err := q.db.ExecContext(ctx, `DELETE FROM product_versions WHERE devices <= 0`)
	return unavailable(err)
}

// DeviceFilter selects devices of the registry. Zero fields select all.
type DeviceFilter struct {
	// Product selects devices that report it installed; Version (with
	// Product) those at that version of it.
	Product, Version string
	// Attributes selects devices that report every one of these values.
	Attributes map[string]string
	// SeenAfter and SeenBefore bound the last check-in (from inclusive,
	// to exclusive).
	SeenAfter, SeenBefore time.Time
	// After is the cursor: devices whose ids sort after it.
	After string
	// Limit is the page size (100 when not set).
	Limit int
	// Count asks for the number of devices the filter selects in all.
	Count bool
}

// DevicePage is a page of devices in id order.
type DevicePage struct {
	Devices []registry.Device `json:"devices"`
	// Next is the cursor of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
	// Total is how many devices the filter selects, when asked for.
	Total *int64 `json:"total,omitempty"`
}

// Devices lists registry devices in id order, a page at a time. The most
// selective index drives it: the product (and version) if given, else the
// first attribute, else the devices themselves; every page is a range read
// of that index from the cursor on.
func (q *queries) Devices(ctx context.Context, f DeviceFilter) (DevicePage, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	var from, where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		if q.dialect == Postgres {
			return fmt.Sprintf("$%d", len(args))
		}
		return "?"
	}
	// key is the driving index's device id column: the order and the cursor.
	key := "d.id"
	if f.Product != "" {
		key = "v.device_id"
		from = append(from, "device_versions v")
		where = append(where, "v.product = "+arg(f.Product))
		if f.Version != "" {
			where = append(where, "v.version = "+arg(f.Version))
		}
	}
	for i, name := range slices.Sorted(maps.Keys(f.Attributes)) {
		a := fmt.Sprintf("a%d", i)
		if key == "d.id" {
			key = a + ".device_id"
		}
		from = append(from, "device_attributes "+a)
		where = append(where, a+".name = "+arg(name), a+".value = "+arg(f.Attributes[name]))
	}
	for _, t := range from {
		alias := t[strings.LastIndexByte(t, ' ')+1:]
		if alias+".device_id" != key {
			where = append(where, alias+".device_id = "+key)
		}
	}
	// The devices themselves: what a page shows, and what the last-seen
	// filters read (a count by the index alone skips them otherwise).
	seen := where[:len(where):len(where)]
	if !f.SeenAfter.IsZero() {
		seen = append(seen, "d.last_seen >= "+arg(f.SeenAfter.UTC()))
	}
	if !f.SeenBefore.IsZero() {
		seen = append(seen, "d.last_seen < "+arg(f.SeenBefore.UTC()))
	}
	if key != "d.id" {
		seen = append(seen, "d.id = "+key)
	}
	clause := func(from, where []string) string {
		return ` FROM ` + strings.Join(from, ", ") + ` WHERE ` + strings.Join(append(where, "1 = 1"), " AND ")
	}
	base := clause(append(from, "devices d"), seen)
	var page DevicePage
	if f.Count {
		count := base
		if len(seen) == len(where)+1 && key != "d.id" {
			count = clause(from, where)
		}
		var n int64
		if err := q.db.QueryRowContext(ctx, `SELECT COUNT(*)`+count, args...).Scan(&n); err != nil {
			return page, unavailable(err)
		}
		page.Total = &n
	}
	query := `SELECT d.id, d.attributes, d.installed, d.first_seen, d.last_seen, d.checkins` + base
	if f.After != "" {
		query += " AND " + key + " > " + arg(f.After)
	}
	query += " ORDER BY " + key + " LIMIT " + arg(f.Limit+1)
	rows, err := q.db.QueryContext(ctx, query, args...)
	if err != nil {
		return page, unavailable(err)
	}
	defer rows.Close()
	page.Devices = []registry.Device{}
	for rows.Next() {
		var d registry.Device
		var attrs, inst string
		if err := rows.Scan(&d.ID, &attrs, &inst, &d.FirstSeen, &d.LastSeen, &d.CheckIns); err != nil {
			return page, unavailable(err)
		}
		d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
		if err := json.Unmarshal([]byte(attrs), &d.Attributes); err != nil {
			return page, err
		}
		if err := json.Unmarshal([]byte(inst), &d.Installed); err != nil {
			return page, err
		}
		page.Devices = append(page.Devices, d)
	}
	if err := rows.Err(); err != nil {
		return page, unavailable(err)
	}
	if len(page.Devices) > f.Limit {
		page.Devices = page.Devices[:f.Limit]
		page.Next = page.Devices[f.Limit-1].ID
	}
	return page, nil
}

// VersionCount is how many registry devices report a version of a product.
type VersionCount struct {
	Version string `json:"version"`
	Devices int64  `json:"devices"`
}

// ProductVersions counts the registry's devices by the version of product
// they report, most devices first: counts kept as devices change, not
// counted on each call.
func (q *queries) ProductVersions(ctx context.Context, product string) ([]VersionCount, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT version, devices FROM product_versions WHERE product = $1
		ORDER BY devices DESC, version`, product)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []VersionCount{}
	for rows.Next() {
		var c VersionCount
		if err := rows.Scan(&c.Version, &c.Devices); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, c)
	}
	return out, unavailable(rows.Err())
}

// DeviceOffer is an offer the server recorded for a device: the first
// time a deployment offered it the update, and in which wave.
type DeviceOffer struct {
	DeploymentID string    `json:"deployment_id"`
	Wave         int       `json:"wave"`
	At           time.Time `json:"at"`
}

// DeviceOutcome is an outcome a device reported about a deployment and
// that counted toward its health.
type DeviceOutcome struct {
	DeploymentID string    `json:"deployment_id"`
	Outcome      string    `json:"outcome"`
	Wave         int       `json:"wave"`
	At           time.Time `json:"at"`
}

// DeviceHistory returns a device's offers and counted outcomes in the
// given deployments, newest first. Both tables are keyed by deployment
// first, so each deployment is one index probe however large the fleet:
// no index by device is kept on these per-event tables, whose appends are
// the aggregator's hot path.
func (q *queries) DeviceHistory(ctx context.Context, deviceID string, deployments []string) ([]DeviceOffer, []DeviceOutcome, error) {
	offers, outcomes := []DeviceOffer{}, []DeviceOutcome{}
	if len(deployments) == 0 {
		return offers, outcomes, nil
	}
	args := []any{deviceID}
	in := inList("deployment_id", deployments, &args)
	rows, err := q.db.QueryContext(ctx, `SELECT deployment_id, wave, offered_at FROM offers WHERE device_id = $1 AND `+in+` ORDER BY offered_at DESC`, args...)
	if err != nil {
		return nil, nil, unavailable(err)
	}
	for rows.Next() {
		var o DeviceOffer
		if err := rows.Scan(&o.DeploymentID, &o.Wave, &o.At); err != nil {
			rows.Close()
			return nil, nil, unavailable(err)
		}
		o.At = o.At.UTC()
		offers = append(offers, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, unavailable(err)
	}
	numbered := []any{deviceID}
	rows, err = q.db.QueryContext(ctx, `SELECT dn.deployment_id, o.outcome, o.wave, o.at FROM device_outcomes o
		JOIN deployment_numbers dn ON dn.number = o.deployment
		JOIN device_numbers vn ON vn.number = o.device
		WHERE vn.device_id = $1 AND `+inList("dn.deployment_id", deployments, &numbered)+` ORDER BY o.at DESC`, numbered...)
	if err != nil {
		return nil, nil, unavailable(err)
	}
	defer rows.Close()
	for rows.Next() {
		var o DeviceOutcome
		var outcome int
		if err := rows.Scan(&o.DeploymentID, &outcome, &o.Wave, &o.At); err != nil {
			return nil, nil, unavailable(err)
		}
		o.Outcome, o.At = string(outcomeOf(outcome)), o.At.UTC()
		outcomes = append(outcomes, o)
	}
	return offers, outcomes, unavailable(rows.Err())
}
