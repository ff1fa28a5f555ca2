package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
)

const deploymentColumns = `d.id, d.update_id, u.product, u.version, d.state, d.created_by, d.created_at, d.cancelled_at, d.reason`

func scanDeployment(row interface{ Scan(...any) error }) (catalog.Deployment, error) {
	var d catalog.Deployment
	var cancelled sql.NullTime
	err := row.Scan(&d.ID, &d.UpdateID, &d.Product, &d.Version, &d.State, &d.CreatedBy, &d.CreatedAt, &cancelled, &d.Reason)
	d.CreatedAt = d.CreatedAt.UTC()
	d.CancelledAt = timePtr(cancelled)
	return d, err
}

// CreateDeployment makes a published update available to all devices of its
// product. If the update already has a running deployment, it returns that
// one with created false. An unpublished update is a Conflict.
func (s *Store) CreateDeployment(ctx context.Context, updateID, actor string) (d catalog.Deployment, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		u, err := tx.Update(ctx, updateID)
		if err != nil {
			return err
		}
		if u.State != catalog.StatePublished {
			return fault.E(fault.Conflict, "update %s (%s %s) is %s; only published updates can be deployed", u.ID, u.Product, u.Version, u.State)
		}
		if d, err = tx.runningDeployment(ctx, updateID); err == nil {
			return nil
		} else if !fault.Is(err, fault.NotFound) {
			return err
		}
		now := tx.now()
		d = catalog.Deployment{ID: catalog.NewID("dep", now), UpdateID: u.ID, Product: u.Product, Version: u.Version,
			State: catalog.DeploymentRunning, CreatedBy: actor, CreatedAt: now}
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO deployments (id, update_id, state, created_by, created_at) VALUES ($1, $2, $3, $4, $5)`,
			d.ID, d.UpdateID, d.State, d.CreatedBy, now); err != nil {
			if isUniqueViolation(err) {
				return fault.E(fault.Conflict, "update %s was deployed concurrently; retry", updateID)
			}
			return unavailable(err)
		}
		created = true
		return tx.BumpGeneration(ctx)
	})
	return d, created, err
}

func (q *queries) runningDeployment(ctx context.Context, updateID string) (catalog.Deployment, error) {
	d, err := scanDeployment(q.db.QueryRowContext(ctx, `SELECT `+deploymentColumns+`
		FROM deployments d JOIN updates u ON u.id = d.update_id WHERE d.update_id = $1 AND d.state = 'running'`, updateID))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "update %s has no running deployment", updateID)
	}
	return d, unavailable(err)
}

// Deployment returns the deployment, or NotFound.
func (q *queries) Deployment(ctx context.Context, id string) (catalog.Deployment, error) {
	d, err := scanDeployment(q.db.QueryRowContext(ctx, `SELECT `+deploymentColumns+`
		FROM deployments d JOIN updates u ON u.id = d.update_id WHERE d.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "deployment %q not found", id)
	}
	return d, unavailable(err)
}

// Deployments lists deployments, newest first; product narrows when set.
func (q *queries) Deployments(ctx context.Context, product string, limit int) ([]catalog.Deployment, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := q.db.QueryContext(ctx, `SELECT `+deploymentColumns+`
		FROM deployments d JOIN updates u ON u.id = d.update_id
		WHERE $1 = '' OR u.product = $1 ORDER BY d.id DESC LIMIT $2`, product, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []catalog.Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}

// CancelDeployment stops offering the deployment's update. Cancelling a
// cancelled deployment returns it unchanged.
func (s *Store) CancelDeployment(ctx context.Context, id, actor, reason string) (d catalog.Deployment, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		now := tx.now()
		res, err := tx.db.ExecContext(ctx, `
			UPDATE deployments SET state = 'cancelled', cancelled_at = $2, reason = $3
			WHERE id = $1 AND state = 'running'`, id, now, reason)
		if err != nil {
			return unavailable(err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if err := tx.BumpGeneration(ctx); err != nil {
				return err
			}
		}
		d, err = tx.Deployment(ctx, id)
		return err
	})
	return d, err
}

// Releases returns the catalog generation and every running deployment with
// its update and payloads, read in one transaction so they agree. It is the
// device plane's snapshot source.
func (s *Store) Releases(ctx context.Context) (gen int64, rels []delivery.Release, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		rels = nil
		if gen, err = tx.Generation(ctx); err != nil {
			return err
		}
		rows, err := tx.db.QueryContext(ctx, `SELECT `+deploymentColumns+`, `+prefixed("u.", updateColumns)+`
			FROM deployments d JOIN updates u ON u.id = d.update_id WHERE d.state = 'running' ORDER BY d.id`)
		if err != nil {
			return unavailable(err)
		}
		defer rows.Close()
		index := map[string][]int{} // update id -> positions in rels
		for rows.Next() {
			var r delivery.Release
			var cancelled, published sql.NullTime
			u := &r.Update
			err := rows.Scan(&r.Deployment.ID, &r.Deployment.UpdateID, &r.Deployment.Product, &r.Deployment.Version,
				&r.Deployment.State, &r.Deployment.CreatedBy, &r.Deployment.CreatedAt, &cancelled, &r.Deployment.Reason,
				&u.ID, &u.Product, &u.Version, &u.Kind, &u.Classification, &u.Severity, &u.Title,
				&u.ReleaseNotes, &u.Applicability, &u.State, &u.FailureReason, &u.CreatedAt, &published)
			if err != nil {
				return unavailable(err)
			}
			index[u.ID] = append(index[u.ID], len(rels))
			rels = append(rels, r)
		}
		if err := rows.Err(); err != nil {
			return unavailable(err)
		}
		prows, err := tx.db.QueryContext(ctx, `SELECT p.update_id, p.name, p.sha256, p.size, p.state
			FROM payloads p JOIN deployments d ON d.update_id = p.update_id AND d.state = 'running'
			ORDER BY p.update_id, p.position`)
		if err != nil {
			return unavailable(err)
		}
		defer prows.Close()
		for prows.Next() {
			var id string
			var p catalog.Payload
			if err := prows.Scan(&id, &p.Name, &p.SHA256, &p.Size, &p.State); err != nil {
				return unavailable(err)
			}
			for _, i := range index[id] {
				rels[i].Update.Payloads = append(rels[i].Update.Payloads, p)
			}
		}
		return unavailable(prows.Err())
	})
	return gen, rels, err
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}
