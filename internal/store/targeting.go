package store

import (
	"context"
	"database/sql"
	"errors"
	"github.com/ringmaster/ringmaster/internal/audit"
	"slices"
	"strings"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// CreateHold stores a new hold (active unless its status says proposed).
// Its product must exist, and its update, if named, must be of that
// product. extra, when not nil, runs in the same transaction.
func (s *Store) CreateHold(ctx context.Context, h targeting.Hold, extra func(*Tx, targeting.Hold) error) (targeting.Hold, error) {
	err := s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.Product(ctx, h.Product); err != nil {
			return err
		}
		if h.UpdateID != "" {
			u, err := tx.Update(ctx, h.UpdateID)
			if err != nil {
				return err
			}
			if u.Product != h.Product {
				return fault.E(fault.Invalid, "update %s is of product %s, not %s", u.ID, u.Product, h.Product)
			}
			h.Version = u.Version
		}
		h.CreatedAt = tx.now()
		if h.Status == "" {
			h.Status = targeting.HoldActive
		}
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO holds (id, product, update_id, rule, reason, source, status, deployment_id, created_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			h.ID, h.Product, h.UpdateID, h.Rule, h.Reason, h.Source, h.Status, h.DeploymentID, h.CreatedBy, h.CreatedAt); err != nil {
			if isUniqueViolation(err) {
				return fault.E(fault.Conflict, "deployment %s already has an automatic hold with this rule", h.DeploymentID)
			}
			return unavailable(err)
		}
		if err := tx.bumpIf(ctx, h.Status == targeting.HoldActive); err != nil {
			return err
		}
		if err := tx.audit(ctx, h.CreatedBy, audit.Change{Action: "hold.create", Target: h.ID, After: h, Reason: h.Reason}); err != nil {
			return err
		}
		if extra != nil {
			return extra(tx, h)
		}
		return nil
	})
	return h, err
}

// ReleaseHold lets the hold's devices be offered again. Releasing a
// released hold returns it unchanged.
func (s *Store) ReleaseHold(ctx context.Context, id, actor, reason string) (h targeting.Hold, err error) {
	if strings.TrimSpace(reason) == "" {
		return h, fault.Field("reason", "say why the hold is released; its devices are offered the update again")
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		before, err := tx.Hold(ctx, id)
		if err != nil {
			return err
		}
		res, err := tx.db.ExecContext(ctx, `UPDATE holds SET status = 'released', released_by = $2, released_at = $3
			WHERE id = $1 AND status IN ('active', 'proposed')`, id, actor, tx.now())
		if err != nil {
			return unavailable(err)
		}
		if h, err = tx.Hold(ctx, id); err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if err := tx.BumpGeneration(ctx); err != nil {
				return err
			}
			return tx.audit(ctx, actor, audit.Change{Action: "hold.release", Target: id, Before: before, After: h, Reason: reason})
		}
		return nil
	})
	return h, err
}

const holdColumns = `h.id, h.product, h.update_id, COALESCE(u.version, ''), h.rule, h.reason, h.source, h.status,
	h.deployment_id, h.created_by, h.created_at, h.released_by, h.released_at`

func scanHold(row interface{ Scan(...any) error }) (targeting.Hold, error) {
	var h targeting.Hold
	var released sql.NullTime
	err := row.Scan(&h.ID, &h.Product, &h.UpdateID, &h.Version, &h.Rule, &h.Reason, &h.Source, &h.Status,
		&h.DeploymentID, &h.CreatedBy, &h.CreatedAt, &h.ReleasedBy, &released)
	h.CreatedAt = h.CreatedAt.UTC()
	h.ReleasedAt = timePtr(released)
	return h, err
}

// ActivateHold turns a proposed hold active (a human accepting the health
// gate's proposal).
func (s *Store) ActivateHold(ctx context.Context, id string) (h targeting.Hold, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		if h, err = tx.Hold(ctx, id); err != nil {
			return err
		}
		if h.Status != targeting.HoldProposed {
			return fault.E(fault.Conflict, "hold %s is %s, not proposed", id, h.Status)
		}
		if _, err := tx.db.ExecContext(ctx, `UPDATE holds SET status = 'active' WHERE id = $1`, id); err != nil {
			return unavailable(err)
		}
		before := h
		h.Status = targeting.HoldActive
		if err := tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "hold.activate", Target: id, Before: before, After: h}); err != nil {
			return err
		}
		return tx.BumpGeneration(ctx)
	})
	return h, err
}

// AutomaticHolds returns the automatic holds a deployment's evidence created.
func (q *queries) AutomaticHolds(ctx context.Context, deploymentID string) ([]targeting.Hold, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+holdColumns+`
		FROM holds h LEFT JOIN updates u ON u.id = h.update_id
		WHERE h.source = 'automatic' AND h.deployment_id = $1 ORDER BY h.id`, deploymentID)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []targeting.Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, h)
	}
	return out, unavailable(rows.Err())
}

// Hold returns a hold, or NotFound.
func (q *queries) Hold(ctx context.Context, id string) (targeting.Hold, error) {
	h, err := scanHold(q.db.QueryRowContext(ctx, `SELECT `+holdColumns+`
		FROM holds h LEFT JOIN updates u ON u.id = h.update_id WHERE h.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return h, fault.E(fault.NotFound, "hold %q not found", id)
	}
	return h, unavailable(err)
}

// Holds lists holds, newest first; product and status narrow when set.
func (q *queries) Holds(ctx context.Context, product string, status targeting.HoldStatus) ([]targeting.Hold, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+holdColumns+`
		FROM holds h LEFT JOIN updates u ON u.id = h.update_id
		WHERE ($1 = '' OR h.product = $1) AND ($2 = '' OR h.status = $2) ORDER BY h.id DESC`, product, string(status))
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []targeting.Hold{}
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, h)
	}
	return out, unavailable(rows.Err())
}

// PutRing creates or replaces a ring (rule, rank, description and explicit
// members).
func (s *Store) PutRing(ctx context.Context, r targeting.Ring) (out targeting.Ring, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		old, err := tx.Ring(ctx, r.Name)
		if created = fault.Is(err, fault.NotFound); err != nil && !created {
			return err
		}
		var before any
		if !created {
			before = old
		}
		if _, err := tx.db.ExecContext(ctx, `INSERT INTO rings (name, rank, rule, description, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (name) DO UPDATE SET rank = excluded.rank, rule = excluded.rule, description = excluded.description`,
			r.Name, r.Rank, r.Rule, r.Description, tx.now()); err != nil {
			return unavailable(err)
		}
		if _, err := tx.db.ExecContext(ctx, `DELETE FROM ring_members WHERE ring = $1`, r.Name); err != nil {
			return unavailable(err)
		}
		for _, m := range r.Members {
			if _, err := tx.db.ExecContext(ctx, `INSERT INTO ring_members (ring, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, r.Name, m); err != nil {
				return unavailable(err)
			}
		}
		if err := tx.BumpGeneration(ctx); err != nil {
			return err
		}
		if out, err = tx.Ring(ctx, r.Name); err != nil {
			return err
		}
		return tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "ring.put", Target: "ring:" + r.Name, Before: before, After: out})
	})
	return out, created, err
}

// DeleteRing deletes a ring no deployment was ever planned for, with its
// members, audited. One a deployment names (whatever its state: its plan
// is history) is a conflict.
func (s *Store) DeleteRing(ctx context.Context, name string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		r, err := tx.Ring(ctx, name)
		if err != nil {
			return err
		}
		// Plans are compact JSON; ring names have no characters to escape
		// but LIKE's own.
		pattern := `%"ring":"` + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(name) + `"%`
		var n int
		if err := tx.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deployments WHERE plan LIKE $1 ESCAPE '\'`, pattern).Scan(&n); err != nil {
			return unavailable(err)
		}
		if n > 0 {
			return fault.E(fault.Conflict, "ring %s is the ring of %d deployments, whose plans keep it", name, n)
		}
		for _, q := range []string{`DELETE FROM ring_members WHERE ring = $1`, `DELETE FROM rings WHERE name = $1`} {
			if _, err := tx.db.ExecContext(ctx, q, name); err != nil {
				return unavailable(err)
			}
		}
		if err := tx.BumpGeneration(ctx); err != nil {
			return err
		}
		return tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "ring.delete", Target: "ring:" + name, Before: r})
	})
}

// Ring returns a ring with its members, or NotFound.
func (q *queries) Ring(ctx context.Context, name string) (targeting.Ring, error) {
	var r targeting.Ring
	err := q.db.QueryRowContext(ctx, `SELECT name, rank, rule, description, created_at FROM rings WHERE name = $1`, name).
		Scan(&r.Name, &r.Rank, &r.Rule, &r.Description, &r.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fault.E(fault.NotFound, "ring %q not found", name)
	}
	if err != nil {
		return r, unavailable(err)
	}
	r.CreatedAt = r.CreatedAt.UTC()
	r.Members, err = q.ringMembers(ctx, name)
	return r, err
}

func (q *queries) ringMembers(ctx context.Context, name string) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT device_id FROM ring_members WHERE ring = $1 ORDER BY device_id`, name)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, m)
	}
	return out, unavailable(rows.Err())
}

// Rings lists rings by rank, with their members.
func (q *queries) Rings(ctx context.Context) ([]targeting.Ring, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT name FROM rings ORDER BY rank, name`)
	if err != nil {
		return nil, unavailable(err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, unavailable(err)
		}
		names = append(names, n)
	}
	rows.Close()
	out := []targeting.Ring{}
	for _, n := range names {
		r, err := q.Ring(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// View returns everything the device snapshot is built from, read in one
// transaction so it is consistent: the generation, every deployment that
// is not cancelled with its update and payloads, active holds, rings and
// floors.
func (s *Store) View(ctx context.Context) (v delivery.View, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		v = delivery.View{Floors: map[string][]string{}, Deltas: map[string][]catalog.Delta{}}
		if v.Generation, err = tx.Generation(ctx); err != nil {
			return err
		}
		deps, err := tx.Deployments(ctx, DeploymentFilter{States: snapshotStates})
		if err != nil {
			return err
		}
		updates := map[string]catalog.Update{}
		models := map[string]*risk.Model{}
		for _, d := range deps {
			u, ok := updates[d.UpdateID]
			if !ok {
				if u, err = tx.Update(ctx, d.UpdateID); err != nil {
					return err
				}
				updates[d.UpdateID] = u
			}
			if u.State != catalog.StatePublished {
				continue // withdrawn: offered to no device, whatever its deployments say
			}
			if _, ok := v.Deltas[u.ID]; !ok {
				ds, err := tx.Deltas(ctx, u.ID)
				if err != nil {
					return err
				}
				v.Deltas[u.ID] = slices.DeleteFunc(ds, func(d catalog.Delta) bool { return d.State != catalog.DeltaReady })
			}
			rel := delivery.Release{Deployment: d, Update: u}
			if id := d.Plan.RiskModel; id != "" && d.Plan.Order == rollout.OrderRisk {
				if _, ok := models[id]; !ok {
					m, err := tx.RiskModelByID(ctx, id)
					if err != nil {
						return err
					}
					models[id] = m.Model
				}
				rel.Risk = models[id]
			}
			v.Releases = append(v.Releases, rel)
		}
		if v.Holds, err = tx.Holds(ctx, "", targeting.HoldActive); err != nil {
			return err
		}
		if v.Rings, err = tx.Rings(ctx); err != nil {
			return err
		}
		if v.Revoked, err = tx.RevokedDevices(ctx); err != nil {
			return err
		}
		if v.Generations, err = tx.CredentialGenerations(ctx); err != nil {
			return err
		}
		products, err := tx.Products(ctx)
		if err != nil {
			return err
		}
		for _, p := range products {
			if len(p.Floors) > 0 {
				v.Floors[p.Name] = p.Floors
			}
			if len(p.Formats) > 0 || p.OmahaAppID != "" {
				if v.Products == nil {
					v.Products = map[string]catalog.Product{}
				}
				v.Products[p.Name] = p
			}
		}
		return nil
	})
	return v, err
}
