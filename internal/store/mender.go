package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// MenderDevice is a device that authenticates through the Mender device
// API.
type MenderDevice struct {
	DeviceID    string            `json:"device_id"`
	Identity    map[string]string `json:"identity"`
	PublicKey   string            `json:"pubkey"`
	Status      string            `json:"status"` // pending, accepted
	RequestedAt time.Time         `json:"requested_at"`
	DecidedAt   *time.Time        `json:"decided_at,omitempty"`
	DecidedBy   string            `json:"decided_by,omitempty"`
}

// Mender device states.
const (
	MenderPending  = "pending"
	MenderAccepted = "accepted"
)

// MenderAuthRequest records a Mender device's authentication request and
// returns its state. acceptedBy, when set, is the enrollment key that
// accepts it (sent as its tenant token), which may also give an accepted
// device a new key. Without it, a new device is pending, and a request
// with a key other than an accepted device's is refused (Conflict): only
// a reset lets it in with another key.
func (s *Store) MenderAuthRequest(ctx context.Context, deviceID string, identity map[string]string, pubkey, acceptedBy string) (status string, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		now := tx.now()
		var oldKey, oldStatus string
		err := tx.db.QueryRowContext(ctx, `SELECT pubkey, status FROM mender_devices WHERE device_id = $1`, deviceID).Scan(&oldKey, &oldStatus)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			status = MenderPending
			var decidedAt any
			if acceptedBy != "" {
				status, decidedAt = MenderAccepted, now
			}
			if _, err := tx.db.ExecContext(ctx, `INSERT INTO mender_devices (device_id, identity, pubkey, status, requested_at, decided_at, decided_by)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, deviceID, jsonText(identity), pubkey, status, now, decidedAt, nullIfEmpty(acceptedBy)); err != nil {
				return unavailable(err)
			}
			if acceptedBy != "" {
				return tx.audit(ctx, acceptedBy, audit.Change{Action: "device.accept", Target: deviceID, After: map[string]any{"identity": identity}})
			}
			return nil
		case err != nil:
			return unavailable(err)
		}
		switch {
		case oldKey == pubkey && (oldStatus == MenderAccepted || acceptedBy == ""):
			status = oldStatus
			return nil
		case acceptedBy != "":
			status = MenderAccepted
			if _, err := tx.db.ExecContext(ctx, `UPDATE mender_devices SET identity = $2, pubkey = $3, status = $4, decided_at = $5, decided_by = $6
				WHERE device_id = $1`, deviceID, jsonText(identity), pubkey, status, now, acceptedBy); err != nil {
				return unavailable(err)
			}
			return tx.audit(ctx, acceptedBy, audit.Change{Action: "device.accept", Target: deviceID,
				Before: map[string]any{"status": oldStatus, "key_changed": oldKey != pubkey}, After: map[string]any{"identity": identity}})
		case oldStatus == MenderAccepted:
			return fault.E(fault.Conflict, "device %q is accepted with another key; an admin must reset it (ringmaster device reset %s --reason …) before it can authenticate with a new one", deviceID, deviceID)
		}
		status = MenderPending
		_, err = tx.db.ExecContext(ctx, `UPDATE mender_devices SET identity = $2, pubkey = $3, requested_at = $4 WHERE device_id = $1`,
			deviceID, jsonText(identity), pubkey, now)
		return unavailable(err)
	})
	return status, err
}

// AcceptMenderDevice accepts a pending Mender device's authentication
// (NotFound if there is no request from it; Conflict if it is accepted
// already), audited as actor's with the reason.
func (s *Store) AcceptMenderDevice(ctx context.Context, deviceID, actor, reason string) (MenderDevice, error) {
	var d MenderDevice
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		if d, err = tx.menderDevice(ctx, deviceID); err != nil {
			return err
		}
		if d.Status == MenderAccepted {
			return fault.E(fault.Conflict, "device %q is accepted already", deviceID)
		}
		now := tx.now()
		if _, err := tx.db.ExecContext(ctx, `UPDATE mender_devices SET status = $2, decided_at = $3, decided_by = $4 WHERE device_id = $1`,
			deviceID, MenderAccepted, now, actor); err != nil {
			return unavailable(err)
		}
		d.Status, d.DecidedAt, d.DecidedBy = MenderAccepted, &now, actor
		return tx.audit(ctx, actor, audit.Change{Action: "device.accept", Target: deviceID, After: map[string]any{"identity": d.Identity}, Reason: reason})
	})
	return d, err
}

const menderColumns = `device_id, identity, pubkey, status, requested_at, decided_at, decided_by`

func scanMender(row interface{ Scan(...any) error }) (MenderDevice, error) {
	var d MenderDevice
	var identity string
	var decidedAt sql.NullTime
	var decidedBy sql.NullString
	if err := row.Scan(&d.DeviceID, &identity, &d.PublicKey, &d.Status, &d.RequestedAt, &decidedAt, &decidedBy); err != nil {
		return d, err
	}
	d.RequestedAt, d.DecidedBy = d.RequestedAt.UTC(), decidedBy.String
	if decidedAt.Valid {
		t := decidedAt.Time.UTC()
		d.DecidedAt = &t
	}
	return d, fromJSON(identity, &d.Identity)
}

func (q *queries) menderDevice(ctx context.Context, deviceID string) (MenderDevice, error) {
	d, err := scanMender(q.db.QueryRowContext(ctx, `SELECT `+menderColumns+` FROM mender_devices WHERE device_id = $1`, deviceID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "no Mender authentication request from device %q", deviceID)
	}
	if err != nil {
		return d, unavailable(err)
	}
	return d, nil
}

// MenderDevices lists the Mender devices in a state ("" for all), oldest
// request first, at most limit.
func (q *queries) MenderDevices(ctx context.Context, status string, limit int) ([]MenderDevice, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+menderColumns+` FROM mender_devices WHERE ($1 = '' OR status = $1)
		ORDER BY requested_at, device_id LIMIT $2`, status, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []MenderDevice{}
	for rows.Next() {
		d, err := scanMender(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}
