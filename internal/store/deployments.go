package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/ringmaster/ringmaster/internal/audit"
	"reflect"
	"strings"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

const deploymentColumns = `d.id, d.update_id, u.product, u.version, d.plan, d.status, d.salt, d.created_by, d.created_at, d.updated_at`

func scanDeployment(row interface{ Scan(...any) error }) (rollout.Deployment, error) {
	var d rollout.Deployment
	var plan, status string
	err := row.Scan(&d.ID, &d.UpdateID, &d.Product, &d.Version, &plan, &status, &d.Salt, &d.CreatedBy, &d.CreatedAt, &d.UpdatedAt)
	if err != nil {
		return d, err
	}
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	if err := fromJSON(plan, &d.Plan); err != nil {
		return d, err
	}
	return d, fromJSON(status, &d.Status)
}

// InsertDeployment stores a new deployment of a published update with the
// actions its creation took (recorded as events by actor). If the update
// already has a live (not halted or cancelled) deployment with the same
// plan, that one is returned with created false; with another plan it is a
// Conflict. An unpublished update is a Conflict.
func (s *Store) InsertDeployment(ctx context.Context, d rollout.Deployment, acts []rollout.Action, actor string) (out rollout.Deployment, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		u, err := tx.Update(ctx, d.UpdateID)
		if err != nil {
			return err
		}
		if u.State != catalog.StatePublished {
			return fault.E(fault.Conflict, "update %s (%s %s) is %s; only published updates can be deployed", u.ID, u.Product, u.Version, u.State)
		}
		rollbackOf := ""
		if d.Plan.Rollback != nil {
			rollbackOf = d.Plan.Rollback.Deployment
		}
		live, err := tx.live(ctx, d.UpdateID, rollbackOf)
		switch {
		case err == nil && reflect.DeepEqual(live.Plan, d.Plan):
			out = live
			return nil
		case err == nil:
			if rollbackOf != "" {
				return fault.E(fault.Conflict, "deployment %s is already rolled back to %s by %s (%s); cancel that first", rollbackOf, u.Version, live.ID, live.State)
			}
			return fault.E(fault.Conflict, "update %s already has deployment %s (%s) with a different plan; cancel it first", u.ID, live.ID, live.State)
		case !fault.Is(err, fault.NotFound):
			return err
		}
		now := tx.now()
		d.Product, d.Version, d.CreatedAt, d.UpdatedAt = u.Product, u.Version, now, now
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO deployments (id, update_id, state, plan, status, salt, created_by, created_at, updated_at, rollback_of)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)`,
			d.ID, d.UpdateID, d.State, jsonText(d.Plan), jsonText(d.Status), d.Salt, d.CreatedBy, now, nullIfEmpty(rollbackOf)); err != nil {
			if isUniqueViolation(err) {
				return fault.E(fault.Conflict, "update %s was deployed concurrently; retry", d.UpdateID)
			}
			return unavailable(err)
		}
		if err := tx.insertEvents(ctx, d.ID, actor, append([]rollout.Action{{Kind: "created", Wave: -1}}, acts...), nil, d); err != nil {
			return err
		}
		out, created = d, true
		return tx.bumpIf(ctx, d.State.Offering())
	})
	return out, created, err
}

// liveDeployment is the update's own live deployment (not a rollback).
func (q *queries) liveDeployment(ctx context.Context, updateID string) (rollout.Deployment, error) {
	return q.live(ctx, updateID, "")
}

// live is the update's live deployment that rolls back rollbackOf, or
// its own when rollbackOf is empty.
func (q *queries) live(ctx context.Context, updateID, rollbackOf string) (rollout.Deployment, error) {
	d, err := scanDeployment(q.db.QueryRowContext(ctx, `SELECT `+deploymentColumns+`
		FROM deployments d JOIN updates u ON u.id = d.update_id
		WHERE d.update_id = $1 AND d.state NOT IN ('halted', 'cancelled') AND COALESCE(d.rollback_of, '') = $2`, updateID, rollbackOf))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "update %s has no live deployment", updateID)
	}
	return d, unavailable(err)
}

// Deployment returns the deployment, or NotFound.
func (q *queries) Deployment(ctx context.Context, id string) (rollout.Deployment, error) {
	return q.deployment(ctx, id, false)
}

func (q *queries) deployment(ctx context.Context, id string, forUpdate bool) (rollout.Deployment, error) {
	query := `SELECT ` + deploymentColumns + ` FROM deployments d JOIN updates u ON u.id = d.update_id WHERE d.id = $1`
	if forUpdate && q.dialect == Postgres {
		query += ` FOR UPDATE OF d`
	}
	d, err := scanDeployment(q.db.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, fault.E(fault.NotFound, "deployment %q not found", id)
	}
	return d, unavailable(err)
}

// DeploymentFilter narrows Deployments.
type DeploymentFilter struct {
	Product string
	// Products, when set, limits the list to these products (a scoped token).
	Products []string
	States   []rollout.State
	// RollbackOf, when set, lists the rollbacks of this deployment.
	RollbackOf string
	Limit      int
}

// Deployments lists deployments, newest first.
func (q *queries) Deployments(ctx context.Context, f DeploymentFilter) ([]rollout.Deployment, error) {
	where, args := []string{"1 = 1"}, []any{}
	if f.Product != "" {
		args = append(args, f.Product)
		where = append(where, fmt.Sprintf("u.product = $%d", len(args)))
	}
	if len(f.Products) > 0 {
		where = append(where, inList("u.product", f.Products, &args))
	}
	if f.RollbackOf != "" {
		args = append(args, f.RollbackOf)
		where = append(where, fmt.Sprintf("d.rollback_of = $%d", len(args)))
	}
	if len(f.States) > 0 {
		var ph []string
		for _, st := range f.States {
			args = append(args, st)
			ph = append(ph, fmt.Sprintf("$%d", len(args)))
		}
		where = append(where, "d.state IN ("+strings.Join(ph, ", ")+")")
	}
	if f.Limit <= 0 || f.Limit > 10000 {
		f.Limit = 10000
	}
	args = append(args, f.Limit)
	rows, err := q.db.QueryContext(ctx, `SELECT `+deploymentColumns+`
		FROM deployments d JOIN updates u ON u.id = d.update_id
		WHERE `+strings.Join(where, " AND ")+fmt.Sprintf(` ORDER BY d.id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []rollout.Deployment{}
	for rows.Next() {
		d, err := scanDeployment(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, d)
	}
	return out, unavailable(rows.Err())
}

// MutateDeployment reads a deployment, lets fn change its status, and saves
// the status with fn's actions (as events by actor) in one transaction,
// bumping the catalog generation if what devices are offered changed. If fn
// fails nothing is saved. extra, when not nil, runs in the same transaction
// (to enqueue follow-up work).
func (s *Store) MutateDeployment(ctx context.Context, id, actor string, fn func(d *rollout.Deployment) ([]rollout.Action, error), extra func(*Tx) error) (d rollout.Deployment, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		if d, err = tx.deployment(ctx, id, true); err != nil {
			return err
		}
		before, plan := d.Status, jsonText(d.Plan)
		acts, err := fn(&d)
		if err != nil {
			return err
		}
		planChanged := jsonText(d.Plan) != plan // a promotion
		if d.Status == before && len(acts) == 0 && !planChanged {
			return nil
		}
		d.UpdatedAt = tx.now()
		if _, err := tx.db.ExecContext(ctx, `UPDATE deployments SET state = $2, status = $3, updated_at = $4, plan = $5 WHERE id = $1`,
			d.ID, d.State, jsonText(d.Status), d.UpdatedAt, jsonText(d.Plan)); err != nil {
			return unavailable(err)
		}
		if err := tx.insertEvents(ctx, d.ID, actor, acts, before, d.Status); err != nil {
			return err
		}
		// A deployment that ends leaves the snapshot even when it was not
		// offering (a paused one cancelled): explain and the DDI dialect's
		// cancelAction read its state there.
		offeringChanged := before.State.Offering() != d.State.Offering() || before.State.Terminal() != d.State.Terminal() ||
			before.Percent != d.Percent || planChanged
		if err := tx.bumpIf(ctx, offeringChanged); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	return d, err
}

// insertEvents records a mutation's actions as the deployment's events and,
// each, as an audit entry carrying the status before and after.
func (q *queries) insertEvents(ctx context.Context, deploymentID, actor string, acts []rollout.Action, before, after any) error {
	// seq numbers a deployment's events; callers hold its row (a new
	// deployment, or MutateDeployment's locked read), so it cannot race.
	var next int
	if err := q.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), -1) + 1 FROM deployment_events WHERE deployment_id = $1`,
		deploymentID).Scan(&next); err != nil {
		return unavailable(err)
	}
	now := q.now()
	for i, a := range acts {
		who := actor
		if a.By != "" {
			who = a.By
		}
		if _, err := q.db.ExecContext(ctx, `
			INSERT INTO deployment_events (id, deployment_id, at, seq, actor, kind, wave, percent, detail)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			catalog.NewID("evt", now), deploymentID, now, next+i, who, a.Kind, a.Wave, a.Percent, a.Detail); err != nil {
			return unavailable(err)
		}
		if err := q.audit(ctx, who, audit.Change{Action: "deployment." + a.Kind, Target: deploymentID,
			Before: before, After: after, Reason: a.Detail}); err != nil {
			return err
		}
	}
	return nil
}

// DeploymentEvents returns a deployment's events, oldest first.
func (q *queries) DeploymentEvents(ctx context.Context, id string) ([]rollout.Event, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, deployment_id, at, actor, kind, wave, percent, detail
		FROM deployment_events WHERE deployment_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []rollout.Event{}
	for rows.Next() {
		var e rollout.Event
		if err := rows.Scan(&e.ID, &e.DeploymentID, &e.At, &e.Actor, &e.Kind, &e.Wave, &e.Percent, &e.Detail); err != nil {
			return nil, unavailable(err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, unavailable(rows.Err())
}

// snapshotStates are the deployments the device snapshot holds: those that
// offer, and those explain must be able to name (scheduled, paused, halted).
var snapshotStates = []rollout.State{rollout.Scheduled, rollout.Running, rollout.Paused, rollout.Completed, rollout.Halted}

// CountDevicesWithProduct counts the registered devices that run a product
// (for paced waves), from the inventory's version counts.
func (q *queries) CountDevicesWithProduct(ctx context.Context, product string) (int64, error) {
	var n int64
	err := q.db.QueryRowContext(ctx, `SELECT CAST(COALESCE(SUM(devices), 0) AS BIGINT) FROM product_versions WHERE product = $1`, product).Scan(&n)
	return n, unavailable(err)
}

// nullIfEmpty stores "" as NULL (a column whose NULL means "none").
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
