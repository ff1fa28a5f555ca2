package store

import (
	"context"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/version"
)

// EarlierPublished lists up to k published updates of product older than
// v, newest first (withdrawn ones included: devices may still run them).
func (q *queries) EarlierPublished(ctx context.Context, product string, v version.Version, k int) ([]catalog.Update, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id FROM updates WHERE product = $1 AND state = 'published' AND version_key < $2
		ORDER BY version_key DESC LIMIT $3`, product, v.Key(), k)
	if err != nil {
		return nil, unavailable(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, unavailable(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	out := make([]catalog.Update, 0, len(ids))
	for _, id := range ids {
		u, err := q.Update(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// PutDelta records a delta (ready or skipped) and marks the catalog
// changed. Recording one already recorded changes nothing and reports
// false.
func (t *Tx) PutDelta(ctx context.Context, d catalog.Delta) (bool, error) {
	res, err := t.db.ExecContext(ctx, `INSERT INTO deltas (to_update_id, from_update_id, name, from_sha256, to_sha256, sha256, size, state, note, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
		d.ToUpdateID, d.FromUpdateID, d.Name, d.FromSHA256, d.ToSHA256, d.SHA256, d.Size, string(d.State), d.Note, t.now())
	if err != nil {
		return false, unavailable(err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, unavailable(err)
	}
	return true, t.bumpIf(ctx, d.State == catalog.DeltaReady)
}

const deltaColumns = `d.to_update_id, d.from_update_id, f.version, d.name, d.from_sha256, d.to_sha256, d.sha256, d.size, d.state, d.note, d.created_at`

// Deltas lists the deltas to an update (ready and skipped), by source
// version and name.
func (q *queries) Deltas(ctx context.Context, toUpdateID string) ([]catalog.Delta, error) {
	return q.deltas(ctx, `WHERE d.to_update_id = $1 ORDER BY f.version_key DESC, d.name`, toUpdateID)
}

// SignedDeltas lists the ready deltas to every published update not
// withdrawn as the TUF targets list them: under the target update's
// product and version, named catalog.DeltaName(from version, payload).
func (q *queries) SignedDeltas(ctx context.Context) ([]SignedPayload, error) {
	rows, err := q.db.QueryContext(ctx, `
		SELECT u.id, u.product, u.version, f.version, d.name, d.sha256, d.size
		FROM deltas d JOIN updates u ON u.id = d.to_update_id JOIN updates f ON f.id = d.from_update_id
		WHERE d.state = 'ready' AND u.state = 'published' AND u.withdrawn_at IS NULL ORDER BY u.id, f.id, d.name`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []SignedPayload
	for rows.Next() {
		var p SignedPayload
		var from string
		if err := rows.Scan(&p.UpdateID, &p.Product, &p.Version, &from, &p.Name, &p.SHA256, &p.Size); err != nil {
			return nil, unavailable(err)
		}
		p.Name = catalog.DeltaName(from, p.Name)
		out = append(out, p)
	}
	return out, unavailable(rows.Err())
}

func (q *queries) deltas(ctx context.Context, where string, args ...any) ([]catalog.Delta, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+deltaColumns+` FROM deltas d JOIN updates f ON f.id = d.from_update_id `+where, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []catalog.Delta{}
	for rows.Next() {
		var d catalog.Delta
		var state string
		if err := rows.Scan(&d.ToUpdateID, &d.FromUpdateID, &d.FromVersion, &d.Name, &d.FromSHA256, &d.ToSHA256, &d.SHA256, &d.Size,
			&state, &d.Note, &d.CreatedAt); err != nil {
			return nil, unavailable(err)
		}
		d.State = catalog.DeltaState(state)
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}

// ReferencedBlobs returns every content digest a payload (in any state:
// an upload in flight is referenced from its declaration) or a delta
// names: the blobs the garbage collector must keep.
func (q *queries) ReferencedBlobs(ctx context.Context) (map[string]bool, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT sha256 FROM payloads UNION SELECT sha256 FROM deltas WHERE sha256 <> ''`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var sha string
		if err := rows.Scan(&sha); err != nil {
			return nil, unavailable(err)
		}
		out[sha] = true
	}
	return out, unavailable(rows.Err())
}

// BlobReferenced reports whether a payload or a delta names sha256.
func (q *queries) BlobReferenced(ctx context.Context, sha256 string) (bool, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM payloads WHERE sha256 = $1) + (SELECT COUNT(*) FROM deltas WHERE sha256 = $1)`, sha256).Scan(&n)
	return n > 0, unavailable(err)
}
