package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// LockTUF takes the TUF repository's lock for this transaction (so one
// signer at a time changes metadata, across replicas) and bumps its
// generation.
func (t *Tx) LockTUF(ctx context.Context) (generation int64, err error) {
	if err = t.db.QueryRowContext(ctx, `UPDATE tuf_state SET generation = generation + 1 WHERE id = 1 RETURNING generation`).Scan(&generation); err != nil {
		return 0, unavailable(err)
	}
	return generation, t.notify(ctx) // other replicas reload the metadata
}

// TUFGeneration returns the repository's generation (it changes with
// every new metadata version).
func (q *queries) TUFGeneration(ctx context.Context) (int64, error) {
	var g int64
	err := q.db.QueryRowContext(ctx, `SELECT generation FROM tuf_state WHERE id = 1`).Scan(&g)
	return g, unavailable(err)
}

// LatestTUF returns the newest version of a role's metadata, or NotFound.
func (q *queries) LatestTUF(ctx context.Context, role string) (version int64, body []byte, err error) {
	var s string
	err = q.db.QueryRowContext(ctx, `SELECT version, body FROM tuf_metadata WHERE role = $1 ORDER BY version DESC LIMIT 1`, role).Scan(&version, &s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, fault.E(fault.NotFound, "no %s metadata yet", role)
	}
	return version, []byte(s), unavailable(err)
}

// TUFVersion returns one version of a role's metadata, or NotFound.
func (q *queries) TUFVersion(ctx context.Context, role string, version int64) ([]byte, error) {
	var s string
	err := q.db.QueryRowContext(ctx, `SELECT body FROM tuf_metadata WHERE role = $1 AND version = $2`, role, version).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fault.E(fault.NotFound, "no %s metadata version %d", role, version)
	}
	return []byte(s), unavailable(err)
}

// PutTUF stores a new version of a role's metadata.
func (t *Tx) PutTUF(ctx context.Context, role string, version int64, body []byte, expires time.Time) error {
	_, err := t.db.ExecContext(ctx, `INSERT INTO tuf_metadata (role, version, body, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)`,
		role, version, string(body), expires.UTC(), t.now())
	if isUniqueViolation(err) {
		return fault.E(fault.Conflict, "%s metadata version %d already exists", role, version)
	}
	return unavailable(err)
}

// SignedPayload is a published payload, as the TUF targets list it.
type SignedPayload struct {
	UpdateID string
	Product  string
	Version  string
	Name     string
	SHA256   string
	Size     int64
}

// PublishedPayloads lists every payload of every published update not
// withdrawn.
func (q *queries) PublishedPayloads(ctx context.Context) ([]SignedPayload, error) {
	rows, err := q.db.QueryContext(ctx, `
		SELECT u.id, u.product, u.version, p.name, p.sha256, p.size
		FROM payloads p JOIN updates u ON u.id = p.update_id
		WHERE u.state = 'published' AND u.withdrawn_at IS NULL ORDER BY u.id, p.position`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []SignedPayload
	for rows.Next() {
		var p SignedPayload
		if err := rows.Scan(&p.UpdateID, &p.Product, &p.Version, &p.Name, &p.SHA256, &p.Size); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, p)
	}
	return out, unavailable(rows.Err())
}
