package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

const enrollmentColumns = `id, name, hash, created_by, created_at, expires_at, revoked_at`

func scanEnrollmentKey(row interface{ Scan(...any) error }) (access.EnrollmentKey, error) {
	var k access.EnrollmentKey
	var expires, revoked sql.NullTime
	err := row.Scan(&k.ID, &k.Name, &k.Hash, &k.CreatedBy, &k.CreatedAt, &expires, &revoked)
	k.CreatedAt = k.CreatedAt.UTC()
	k.ExpiresAt, k.RevokedAt = timePtr(expires), timePtr(revoked)
	return k, err
}

// CreateEnrollmentKey stores an enrollment key's hash and audits it.
func (s *Store) CreateEnrollmentKey(ctx context.Context, k access.EnrollmentKey, actor string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.db.ExecContext(ctx, `INSERT INTO enrollment_keys (`+enrollmentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, NULL)`,
			k.ID, k.Name, k.Hash, k.CreatedBy, k.CreatedAt.UTC(), nullTime(k.ExpiresAt)); err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "enrollment_key.create", Target: k.ID, After: k})
	})
}

// EnrollmentKeyByHash returns the enrollment key with this hash, or NotFound.
func (q *queries) EnrollmentKeyByHash(ctx context.Context, hash string) (access.EnrollmentKey, error) {
	k, err := scanEnrollmentKey(q.db.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM enrollment_keys WHERE hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fault.E(fault.NotFound, "enrollment key not found")
	}
	return k, unavailable(err)
}

// EnrollmentKeys lists every enrollment key, oldest first.
func (q *queries) EnrollmentKeys(ctx context.Context) ([]access.EnrollmentKey, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+enrollmentColumns+` FROM enrollment_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []access.EnrollmentKey{}
	for rows.Next() {
		k, err := scanEnrollmentKey(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, k)
	}
	return out, unavailable(rows.Err())
}

// RevokeEnrollmentKey stops an enrollment key enrolling more devices
// (devices it enrolled keep their credentials).
func (s *Store) RevokeEnrollmentKey(ctx context.Context, id, actor, reason string) (k access.EnrollmentKey, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		before, err := scanEnrollmentKey(tx.db.QueryRowContext(ctx, `SELECT `+enrollmentColumns+` FROM enrollment_keys WHERE id = $1`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fault.E(fault.NotFound, "no enrollment key %s", id)
		}
		if err != nil {
			return unavailable(err)
		}
		k = before
		if before.RevokedAt != nil {
			return nil
		}
		now := tx.now()
		k.RevokedAt = &now
		if _, err := tx.db.ExecContext(ctx, `UPDATE enrollment_keys SET revoked_at = $1 WHERE id = $2`, now, id); err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "enrollment_key.revoke", Target: id, Before: before, After: k, Reason: reason})
	})
	return k, err
}

// DeviceRevocation records that a device's credential no longer counts.
type DeviceRevocation struct {
	DeviceID  string `json:"device_id"`
	Reason    string `json:"reason"`
	RevokedBy string `json:"revoked_by"`
	RevokedAt string `json:"revoked_at"`
}

// RevokeDevice revokes a device's credential; its check-ins and events are
// refused from the next snapshot on, and it cannot enroll again.
func (s *Store) RevokeDevice(ctx context.Context, deviceID, actor, reason string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		res, err := tx.db.ExecContext(ctx, `
			INSERT INTO device_revocations (device_id, reason, revoked_by, revoked_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (device_id) DO NOTHING`, deviceID, reason, actor, tx.now())
		if err != nil {
			return unavailable(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		if err := tx.BumpGeneration(ctx); err != nil {
			return err
		}
		return tx.audit(ctx, actor, audit.Change{Action: "device.revoke", Target: deviceID, After: map[string]string{"device_id": deviceID}, Reason: reason})
	})
}

// DeviceRevoked reports whether a device's credential is revoked.
func (q *queries) DeviceRevoked(ctx context.Context, deviceID string) (bool, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM device_revocations WHERE device_id = $1`, deviceID).Scan(&n)
	return n > 0, unavailable(err)
}

// RevokedDevices returns every revoked device id.
func (q *queries) RevokedDevices(ctx context.Context) (map[string]bool, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT device_id FROM device_revocations`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, unavailable(err)
		}
		out[id] = true
	}
	return out, unavailable(rows.Err())
}
