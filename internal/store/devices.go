package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/registry"
)

// sightingsPerStatement rows go in one multi-row statement (5 parameters
// each, well under both engines' limits).
const sightingsPerStatement = 200

// RecordSightings upserts a batch of device sightings in one transaction,
// many rows per statement, with the offers they were answered with (the
// first offer of a deployment to a device is kept), and keeps the device
// inventory in step. A sighting older than what is stored only adds its
// check-in count.
func (s *Store) RecordSightings(ctx context.Context, batch []registry.Seen) error {
	return s.InTx(ctx, func(tx *Tx) error {
		var offers []any
		for _, d := range batch {
			for _, o := range d.Offers {
				offers = append(offers, o.DeploymentID, d.DeviceID, o.Wave, o.At.UTC())
			}
		}
		rows, err := sightingRows(batch)
		if err != nil {
			return err
		}
		// Most sightings are of devices checking in again as they were: one
		// update each. The rest (new devices, new attributes or versions)
		// are upserted, and their inventory rows rewritten from what was
		// stored (a late sighting older than the stored one changes nothing).
		var rest []sightingRow
		var changed []registry.Device
		for len(rows) > 0 {
			n := min(len(rows), sightingsPerStatement)
			touched, err := tx.touchDevices(ctx, rows[:n])
			if err != nil {
				return err
			}
			for _, r := range rows[:n] {
				if !touched[r.id] {
					rest = append(rest, r)
				}
			}
			rows = rows[n:]
		}
		for len(rest) > 0 {
			n := min(len(rest), sightingsPerStatement)
			stored, err := tx.upsertDevices(ctx, rest[:n])
			if err != nil {
				return err
			}
			changed = append(changed, stored...)
			rest = rest[n:]
		}
		if err := tx.reindex(ctx, changed); err != nil {
			return err
		}
		return tx.insertNew(ctx, "offers (deployment_id, device_id, wave, offered_at)", 4, offers)
	})
}

// OfferCounts returns how many devices the server has offered a
// deployment's update to, by the wave whose share first included them.
func (q *queries) OfferCounts(ctx context.Context, deploymentID string) (map[int]int64, error) {
	return queryCounts[int](ctx, q.db, `SELECT wave, COUNT(*) FROM offers WHERE deployment_id = $1 GROUP BY wave`, deploymentID)
}

// queryCounts runs a query of (key, count) rows into a map.
func queryCounts[K comparable](ctx context.Context, db dbtx, query string, args ...any) (map[K]int64, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := map[K]int64{}
	for rows.Next() {
		var k K
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, unavailable(err)
		}
		out[k] = n
	}
	return out, unavailable(rows.Err())
}

// OfferedDevices returns the devices the server has offered a
// deployment's update to.
func (q *queries) OfferedDevices(ctx context.Context, deploymentID string) (map[string]bool, error) {
	return querySet(ctx, q.db, `SELECT device_id FROM offers WHERE deployment_id = $1`, deploymentID)
}

// querySet runs a query of one text column into a set.
func querySet(ctx context.Context, db dbtx, query string, args ...any) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, unavailable(err)
		}
		out[v] = true
	}
	return out, unavailable(rows.Err())
}

// Offered returns the server's record of offering a deployment's update
// to a device, or NotFound.
func (q *queries) Offered(ctx context.Context, deploymentID, deviceID string) (registry.Offer, error) {
	o := registry.Offer{DeploymentID: deploymentID}
	err := q.db.QueryRowContext(ctx, `SELECT wave, offered_at FROM offers WHERE deployment_id = $1 AND device_id = $2`, deploymentID, deviceID).
		Scan(&o.Wave, &o.At)
	if errors.Is(err, sql.ErrNoRows) {
		return o, fault.E(fault.NotFound, "deployment %s was never offered to device %q", deploymentID, deviceID)
	}
	o.At = o.At.UTC()
	return o, unavailable(err)
}

// sightingRow is a sighting as stored: attributes and installed versions
// as JSON (keys sorted, so equal maps are equal text).
type sightingRow struct {
	id, attributes, installed string
	at                        time.Time
	checkIns                  int64
}

func sightingRows(batch []registry.Seen) ([]sightingRow, error) {
	out := make([]sightingRow, len(batch))
	for i, d := range batch {
		attrs, err := json.Marshal(orEmpty(d.Attributes))
		if err != nil {
			return nil, err
		}
		inst, err := json.Marshal(orEmpty(d.Installed))
		if err != nil {
			return nil, err
		}
		out[i] = sightingRow{id: d.DeviceID, attributes: string(attrs), installed: string(inst), at: d.At.UTC(), checkIns: d.CheckIns}
	}
	return out, nil
}

// sightingValues writes "(...), (...)" for rows and appends their values
// (id, attributes, installed, at, check-ins) to args. PostgreSQL is told
// the first row's types (the others follow them).
func (q *queries) sightingValues(sb *strings.Builder, rows []sightingRow, args []any) []any {
	for i, r := range rows {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		if i == 0 && q.dialect == Postgres {
			fmt.Fprintf(sb, "$%d::text, $%d::text, $%d::text, $%d::timestamp, $%d::bigint", 1, 2, 3, 4, 5)
		} else {
			q.placeholders(sb, len(args), 5)
		}
		sb.WriteByte(')')
		args = append(args, r.id, r.attributes, r.installed, r.at, r.checkIns)
	}
	return args
}

// touchDevices records the sightings of devices whose attributes and
// installed versions are those stored (the last check-in moves forward,
// check-ins add up) and returns the ids it updated.
func (q *queries) touchDevices(ctx context.Context, rows []sightingRow) (map[string]bool, error) {
	var sb strings.Builder
	sb.WriteString(`WITH seen (id, attributes, installed, at, checkins) AS (VALUES `)
	args := q.sightingValues(&sb, rows, make([]any, 0, len(rows)*5))
	sb.WriteString(`)
		UPDATE devices SET
			last_seen = CASE WHEN seen.at > devices.last_seen THEN seen.at ELSE devices.last_seen END,
			checkins  = devices.checkins + seen.checkins
		FROM seen
		WHERE devices.id = seen.id AND devices.attributes = seen.attributes AND devices.installed = seen.installed
		RETURNING devices.id`)
	got, err := q.db.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer got.Close()
	touched := make(map[string]bool, len(rows))
	for got.Next() {
		var id string
		if err := got.Scan(&id); err != nil {
			return nil, unavailable(err)
		}
		touched[id] = true
	}
	return touched, unavailable(got.Err())
}

// upsertDevices records sightings (a sighting older than the stored one
// only adds its check-ins) and returns each device as stored after it.
func (q *queries) upsertDevices(ctx context.Context, rows []sightingRow) ([]registry.Device, error) {
	var sb strings.Builder
	sb.WriteString(`WITH seen (id, attributes, installed, at, checkins) AS (VALUES `)
	args := q.sightingValues(&sb, rows, make([]any, 0, len(rows)*5))
	sb.WriteString(`)
		INSERT INTO devices (id, attributes, installed, first_seen, last_seen, checkins)
		SELECT id, attributes, installed, at, at, checkins FROM seen WHERE true
		ON CONFLICT (id) DO UPDATE SET
			attributes = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.attributes ELSE devices.attributes END,
			installed  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.installed ELSE devices.installed END,
			last_seen  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END,
			checkins   = devices.checkins + excluded.checkins
		RETURNING id, attributes, installed`)
	got, err := q.db.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, unavailable(err)
	}
	return readDevices(got)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// Device returns what the registry knows of a device, or NotFound.
func (q *queries) Device(ctx context.Context, id string) (registry.Device, error) {
	var d registry.Device
	var attrs, inst string
	err := q.db.QueryRowContext(ctx, `SELECT id, attributes, installed, first_seen, last_seen, checkins FROM devices WHERE id = $1`, id).
		Scan(&d.ID, &attrs, &inst, &d.FirstSeen, &d.LastSeen, &d.CheckIns)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "device %q not found", id)
	}
	if err != nil {
		return d, unavailable(err)
	}
	d.FirstSeen, d.LastSeen = d.FirstSeen.UTC(), d.LastSeen.UTC()
	if err := json.Unmarshal([]byte(attrs), &d.Attributes); err != nil {
		return d, err
	}
	return d, json.Unmarshal([]byte(inst), &d.Installed)
}

// CountDevices returns how many devices the registry knows.
func (q *queries) CountDevices(ctx context.Context) (int64, error) {
	var n int64
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices`).Scan(&n)
	return n, unavailable(err)
}

// DevicesWithProduct returns up to limit registry devices that report
// product installed (for forecasts that evaluate rules over the fleet).
func (q *queries) DevicesWithProduct(ctx context.Context, product string, limit int) ([]registry.Device, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT d.id, d.attributes, d.installed FROM device_versions v, devices d
		WHERE v.product = $1 AND d.id = v.device_id ORDER BY v.device_id LIMIT $2`, product, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	return readDevices(rows)
}
