package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

const enrollmentColumns = `id, name, hash, created_by, created_at, expires_at, revoked_at, max_devices, enrolled`

func scanEnrollmentKey(row interface{ Scan(...any) error }) (access.EnrollmentKey, error) {
	var k access.EnrollmentKey
	var expires, revoked sql.NullTime
	err := row.Scan(&k.ID, &k.Name, &k.Hash, &k.CreatedBy, &k.CreatedAt, &expires, &revoked, &k.MaxDevices, &k.Enrolled)
	k.CreatedAt = k.CreatedAt.UTC()
	k.ExpiresAt, k.RevokedAt = timePtr(expires), timePtr(revoked)
	return k, err
}

// CreateEnrollmentKey stores an enrollment key's hash and audits it.
func (s *Store) CreateEnrollmentKey(ctx context.Context, k access.EnrollmentKey, actor string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.db.ExecContext(ctx, `INSERT INTO enrollment_keys (`+enrollmentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, 0)`,
			k.ID, k.Name, k.Hash, k.CreatedBy, k.CreatedAt.UTC(), nullTime(k.ExpiresAt), k.MaxDevices); err != nil {
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
	return querySet(ctx, q.db, `SELECT device_id FROM device_revocations`)
}

// EnrollmentActor names an enrollment key in the audit log.
func EnrollmentActor(keyID string) string { return "enrollment_key:" + keyID }

// EnrollDevice records that key k enrolls deviceID and returns the
// credential generation to mint for it. A device id is enrolled once: if
// it already is, the answer is Conflict until an admin resets it; a key
// that has enrolled its MaxDevices is Forbidden. Enrollments and refusals
// are audited as the key's. Safe for concurrent use: two enrollments of
// one id, or past one key's quota, cannot both succeed.
func (s *Store) EnrollDevice(ctx context.Context, deviceID string, k access.EnrollmentKey) (gen int64, err error) {
	actor := EnrollmentActor(k.ID)
	var refusal error
	err = s.InTx(ctx, func(tx *Tx) error {
		now := tx.now()
		res, err := tx.db.ExecContext(ctx, `UPDATE enrollment_keys SET enrolled = enrolled + 1
			WHERE id = $1 AND (max_devices = 0 OR enrolled < max_devices)`, k.ID)
		if err != nil {
			return unavailable(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			refusal = fault.E(fault.Forbidden, "enrollment key %s has enrolled its quota of %d devices; create another key, or reset devices it enrolled to give their places back", k.ID, k.MaxDevices)
			return refusal
		}
		// Inserts, or takes a reset device's row; an enrolled device's row
		// is left alone and returns nothing.
		err = tx.db.QueryRowContext(ctx, `INSERT INTO device_enrollments (device_id, generation, enrollment_key_id, enrolled_at)
			VALUES ($1, 0, $2, $3)
			ON CONFLICT (device_id) DO UPDATE SET enrollment_key_id = excluded.enrollment_key_id, enrolled_at = excluded.enrolled_at
			WHERE device_enrollments.enrollment_key_id IS NULL
			RETURNING generation`, deviceID, k.ID, now).Scan(&gen)
		if errors.Is(err, sql.ErrNoRows) {
			refusal = fault.E(fault.Conflict, "device %q is already enrolled; an admin must reset it first (ringmaster device reset %s --reason …), which invalidates its current credential", deviceID, deviceID)
			return refusal
		}
		if err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "device.enroll", Target: deviceID,
			After: map[string]any{"device_id": deviceID, "generation": gen, "enrollment_key": k.ID}})
	})
	if refusal != nil && errors.Is(err, refusal) {
		s.auditRefusal(ctx, actor, "device.enroll_refused", deviceID, fault.Message(refusal))
	}
	return gen, err
}

// RefuseEnrollment audits an enrollment refused before it reached the
// store (an unusable key, a revoked device, the key's rate limit).
func (s *Store) RefuseEnrollment(ctx context.Context, keyID, deviceID, why string) {
	s.auditRefusal(ctx, EnrollmentActor(keyID), "device.enroll_refused", deviceID, why)
}

// auditRefusal records a refused request on its own; the audit log is the
// record, so a failure to write it is not the caller's to handle.
func (s *Store) auditRefusal(ctx context.Context, actor, action, target, why string) {
	ctx = context.WithoutCancel(ctx)
	_ = s.InTx(ctx, func(tx *Tx) error {
		return tx.audit(ctx, actor, audit.Change{Action: action, Target: target, Reason: why})
	})
}

// ResetDevice starts a device's next credential generation: every
// credential it was handed is refused from the next snapshot on, and it
// may enroll again with any valid key (its place in the old key's quota is
// given back). A device that never enrolled gets generation 1, which
// refuses credentials minted before enrollments were recorded.
func (s *Store) ResetDevice(ctx context.Context, deviceID, actor, reason string) (gen int64, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		var oldGen int64
		var oldKey sql.NullString
		err := tx.db.QueryRowContext(ctx, `SELECT generation, enrollment_key_id FROM device_enrollments WHERE device_id = $1`, deviceID).Scan(&oldGen, &oldKey)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return unavailable(err)
		}
		now := tx.now()
		if err := tx.db.QueryRowContext(ctx, `INSERT INTO device_enrollments (device_id, generation, reset_at, reset_by, reset_reason)
			VALUES ($1, 1, $2, $3, $4)
			ON CONFLICT (device_id) DO UPDATE SET generation = device_enrollments.generation + 1, enrollment_key_id = NULL,
				enrolled_at = NULL, reset_at = excluded.reset_at, reset_by = excluded.reset_by, reset_reason = excluded.reset_reason
			RETURNING generation`, deviceID, now, actor, reason).Scan(&gen); err != nil {
			return unavailable(err)
		}
		if oldKey.Valid {
			if _, err := tx.db.ExecContext(ctx, `UPDATE enrollment_keys SET enrolled = enrolled - 1 WHERE id = $1 AND enrolled > 0`, oldKey.String); err != nil {
				return unavailable(err)
			}
		}
		// A Mender device authenticates from scratch: pending again.
		if _, err := tx.db.ExecContext(ctx, `DELETE FROM mender_devices WHERE device_id = $1`, deviceID); err != nil {
			return unavailable(err)
		}
		if err := tx.BumpGeneration(ctx); err != nil {
			return err
		}
		return tx.audit(ctx, actor, audit.Change{Action: "device.reset", Target: deviceID,
			Before: map[string]any{"generation": oldGen, "enrollment_key": oldKey.String},
			After:  map[string]any{"generation": gen}, Reason: reason})
	})
	return gen, err
}

// CredentialGenerations returns the current credential generation of
// every device an admin has reset (the rest are at generation 0).
func (q *queries) CredentialGenerations(ctx context.Context) (map[string]int64, error) {
	return queryCounts[string](ctx, q.db, `SELECT device_id, generation FROM device_enrollments WHERE generation > 0`)
}

// Enrollment returns the enrollment key that enrolled a device and its
// credential generation, or NotFound when it is not enrolled (never, or
// reset since).
func (q *queries) Enrollment(ctx context.Context, deviceID string) (keyID string, gen int64, err error) {
	var key sql.NullString
	err = q.db.QueryRowContext(ctx, `SELECT enrollment_key_id, generation FROM device_enrollments WHERE device_id = $1`, deviceID).Scan(&key, &gen)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !key.Valid) {
		return "", gen, fault.E(fault.NotFound, "device %q is not enrolled", deviceID)
	}
	return key.String, gen, unavailable(err)
}
