package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/registry"
)

// sightingsPerStatement rows go in one multi-row upsert (6 parameters
// each, well under both engines' limits).
const sightingsPerStatement = 200

// RecordSightings upserts a batch of device sightings in one transaction,
// many rows per statement. A sighting older than what is stored only adds
// its check-in count.
func (s *Store) RecordSightings(ctx context.Context, batch []registry.Seen) error {
	return s.InTx(ctx, func(tx *Tx) error {
		for len(batch) > 0 {
			n := min(len(batch), sightingsPerStatement)
			if err := tx.upsertDevices(ctx, batch[:n]); err != nil {
				return err
			}
			batch = batch[n:]
		}
		return nil
	})
}

func (q *queries) upsertDevices(ctx context.Context, rows []registry.Seen) error {
	var sb strings.Builder
	sb.WriteString(`INSERT INTO devices (id, attributes, installed, first_seen, last_seen, checkins) VALUES `)
	args := make([]any, 0, len(rows)*6)
	for i, d := range rows {
		attrs, err := json.Marshal(orEmpty(d.Attributes))
		if err != nil {
			return err
		}
		inst, err := json.Marshal(orEmpty(d.Installed))
		if err != nil {
			return err
		}
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		q.placeholders(&sb, len(args), 6)
		sb.WriteByte(')')
		at := d.At.UTC()
		args = append(args, d.DeviceID, string(attrs), string(inst), at, at, d.CheckIns)
	}
	sb.WriteString(`
		ON CONFLICT (id) DO UPDATE SET
			attributes = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.attributes ELSE devices.attributes END,
			installed  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.installed ELSE devices.installed END,
			last_seen  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END,
			checkins   = devices.checkins + excluded.checkins`)
	_, err := q.db.ExecContext(ctx, sb.String(), args...)
	return unavailable(err)
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
	rows, err := q.db.QueryContext(ctx, `SELECT id, attributes, installed FROM devices WHERE installed LIKE $1 ORDER BY id LIMIT $2`,
		`%"`+product+`":%`, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []registry.Device
	for rows.Next() {
		var d registry.Device
		var attrs, inst string
		if err := rows.Scan(&d.ID, &attrs, &inst); err != nil {
			return nil, unavailable(err)
		}
		if json.Unmarshal([]byte(attrs), &d.Attributes) != nil || json.Unmarshal([]byte(inst), &d.Installed) != nil {
			continue
		}
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}
