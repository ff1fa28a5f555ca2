package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/registry"
)

// RecordSightings upserts a batch of device sightings in one transaction.
func (s *Store) RecordSightings(ctx context.Context, batch []registry.Seen) error {
	return s.InTx(ctx, func(tx *Tx) error {
		for _, d := range batch {
			attrs, err := json.Marshal(orEmpty(d.Attributes))
			if err != nil {
				return err
			}
			inst, err := json.Marshal(orEmpty(d.Installed))
			if err != nil {
				return err
			}
			at := d.At.UTC()
			if _, err := tx.db.ExecContext(ctx, `
				INSERT INTO devices (id, attributes, installed, first_seen, last_seen, checkins)
				VALUES ($1, $2, $3, $4, $4, $5)
				ON CONFLICT (id) DO UPDATE SET
					attributes = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.attributes ELSE devices.attributes END,
					installed  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.installed ELSE devices.installed END,
					last_seen  = CASE WHEN excluded.last_seen >= devices.last_seen THEN excluded.last_seen ELSE devices.last_seen END,
					checkins   = devices.checkins + excluded.checkins`,
				d.DeviceID, string(attrs), string(inst), at, d.CheckIns); err != nil {
				return unavailable(err)
			}
		}
		return nil
	})
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
