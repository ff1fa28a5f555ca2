package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/ringmaster/ringmaster/internal/audit"
	"maps"
	"slices"
	"strings"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/version"
)

// PutProduct creates the product, or updates its title and description if it
// exists. created reports which.
// The product's floors change what devices are offered, so a change bumps
// the catalog generation.
func (s *Store) PutProduct(ctx context.Context, p catalog.NewProduct) (out catalog.Product, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		out, created, err = tx.putProduct(ctx, p)
		return err
	})
	return out, created, err
}

func (tx *Tx) putProduct(ctx context.Context, p catalog.NewProduct) (_ catalog.Product, created bool, _ error) {
	now := tx.now()
	floors, formats := jsonText(orEmptySlice(p.Floors)), jsonText(orEmpty(p.Formats))
	appID := catalog.NormalizeOmahaAppID(p.OmahaAppID)
	if appID != "" {
		// The unique index is the guard; this names the product that has it.
		var other string
		err := tx.db.QueryRowContext(ctx, `SELECT name FROM products WHERE omaha_app_id = $1 AND name <> $2`, appID, p.Name).Scan(&other)
		if err == nil {
			return catalog.Product{}, false, fault.E(fault.Conflict, "product %q already has Omaha app id %s", other, appID)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return catalog.Product{}, false, unavailable(err)
		}
	}
	res, err := tx.db.ExecContext(ctx, `
		INSERT INTO products (name, title, description, floors, formats, omaha_app_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (name) DO NOTHING`, p.Name, p.Title, p.Description, floors, formats, appID, now)
	if err != nil {
		return catalog.Product{}, false, unavailable(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		got := catalog.Product{Name: p.Name, Title: p.Title, Description: p.Description, Floors: p.Floors, Formats: p.Formats, OmahaAppID: appID, CreatedAt: now}
		if err := tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "product.create", Target: "product:" + p.Name, After: got}); err != nil {
			return got, false, err
		}
		return got, true, tx.bumpIf(ctx, len(p.Floors) > 0 || len(p.Formats) > 0 || appID != "")
	}
	old, err := tx.Product(ctx, p.Name)
	if err != nil {
		return old, false, err
	}
	offering := !slices.Equal(old.Floors, p.Floors) || !maps.Equal(old.Formats, p.Formats) || old.OmahaAppID != appID
	if old.Title == p.Title && old.Description == p.Description && !offering {
		return old, false, nil
	}
	if _, err := tx.db.ExecContext(ctx, `UPDATE products SET title = $2, description = $3, floors = $4, formats = $5, omaha_app_id = $6 WHERE name = $1`,
		p.Name, p.Title, p.Description, floors, formats, appID); err != nil {
		return catalog.Product{}, false, unavailable(err)
	}
	if err := tx.bumpIf(ctx, offering); err != nil {
		return old, false, err
	}
	got, err := tx.Product(ctx, p.Name)
	if err != nil {
		return got, false, err
	}
	return got, false, tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "product.update", Target: "product:" + p.Name, Before: old, After: got})
}

func (q *queries) bumpIf(ctx context.Context, changed bool) error {
	if !changed {
		return nil
	}
	return q.BumpGeneration(ctx)
}

const productColumns = `name, title, description, floors, formats, omaha_app_id, created_at`

func scanProduct(row interface{ Scan(...any) error }) (catalog.Product, error) {
	var p catalog.Product
	var floors, formats string
	if err := row.Scan(&p.Name, &p.Title, &p.Description, &floors, &formats, &p.OmahaAppID, &p.CreatedAt); err != nil {
		return p, err
	}
	p.CreatedAt = p.CreatedAt.UTC()
	if err := fromJSON(formats, &p.Formats); err != nil {
		return p, err
	}
	if len(p.Formats) == 0 {
		p.Formats = nil
	}
	return p, fromJSON(floors, &p.Floors)
}

// Product returns the named product, or a NotFound error.
func (q *queries) Product(ctx context.Context, name string) (catalog.Product, error) {
	p, err := scanProduct(q.db.QueryRowContext(ctx, `SELECT `+productColumns+` FROM products WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return p, fault.E(fault.NotFound, "product %q not found", name)
	}
	return p, unavailable(err)
}

// Products lists all products by name.
func (q *queries) Products(ctx context.Context) ([]catalog.Product, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+productColumns+` FROM products ORDER BY name`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []catalog.Product{}
	for rows.Next() {
		p, err := scanProduct(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, p)
	}
	return out, unavailable(rows.Err())
}

// CreateUpdate stores a new update with its declared payloads, all pending.
// If the product already has an update of an equal version that declares
// exactly the same content, it returns that one with created false (a repeat
// publish is idempotent); any other equal version is a Conflict. An unknown
// product is NotFound. The payloads whose content the caller already holds
// (stored(sha256) true) start as uploaded, so they need not be sent again.
func (s *Store) CreateUpdate(ctx context.Context, nu catalog.NewUpdate, v version.Version, stored func(sha256 string) bool) (u catalog.Update, created bool, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		p, err := tx.Product(ctx, nu.Product)
		if err != nil {
			return err
		}
		if err := p.CheckPayloadNames(nu.Payloads); err != nil {
			return err
		}
		existing, err := tx.updateByVersion(ctx, nu.Product, v)
		switch {
		case err == nil && existing.State == catalog.StateFailed:
			// Creating a failed version again retries it, with the same or
			// corrected payloads and metadata, under the same id.
			u, err = tx.retryUpdate(ctx, existing, nu, stored)
			return err
		case err == nil && nu.SameContent(existing):
			u = existing
			return nil
		case err == nil:
			return fault.E(fault.Conflict, "product %q already has version %s (update %s) with different content; publish a new version", nu.Product, existing.Version, existing.ID)
		case !fault.Is(err, fault.NotFound):
			return err
		}
		now := tx.now()
		u = catalog.Update{
			ID: catalog.NewID("upd", now), Product: nu.Product, Version: nu.Version, Kind: nu.Kind,
			Classification: nu.Classification, Severity: nu.Severity, Title: nu.Title,
			ReleaseNotes: nu.ReleaseNotes, Applicability: nu.Applicability, Prerequisites: nu.Prerequisites,
			State: catalog.StateAwaitingUpload, CreatedAt: now,
		}
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO updates (id, product, version, version_key, kind, classification, severity, title,
			                     release_notes, applicability, prerequisites, state, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
			u.ID, u.Product, u.Version, v.Key(), u.Kind, u.Classification, u.Severity, u.Title,
			u.ReleaseNotes, u.Applicability, jsonText(orEmptySlice(u.Prerequisites)), u.State, now); err != nil {
			if isUniqueViolation(err) {
				return fault.E(fault.Conflict, "product %q already has version %s", nu.Product, nu.Version)
			}
			return unavailable(err)
		}
		if u.Payloads, err = tx.insertPayloads(ctx, u.ID, nu.Payloads, stored); err != nil {
			return err
		}
		created = true
		return tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "update.create", Target: u.ID, After: u})
	})
	return u, created, err
}

// retryUpdate resets a failed update to await its payloads again: its
// metadata and payloads become nu's, each payload already stored counts as
// uploaded, the failure reason is cleared, and the retry is audited with
// the failure it follows.
func (tx *Tx) retryUpdate(ctx context.Context, failed catalog.Update, nu catalog.NewUpdate, stored func(sha256 string) bool) (catalog.Update, error) {
	u := failed
	u.Kind, u.Classification, u.Severity, u.Title = nu.Kind, nu.Classification, nu.Severity, nu.Title
	u.ReleaseNotes, u.Applicability, u.Prerequisites = nu.ReleaseNotes, nu.Applicability, nu.Prerequisites
	u.State, u.FailureReason, u.Payloads, u.Attempt = catalog.StateAwaitingUpload, "", nil, failed.Attempt+1
	res, err := tx.db.ExecContext(ctx, `UPDATE updates SET kind = $2, classification = $3, severity = $4, title = $5, release_notes = $6,
		applicability = $7, prerequisites = $8, state = $9, failure_reason = '', attempt = attempt + 1 WHERE id = $1 AND state = $10`,
		u.ID, u.Kind, u.Classification, u.Severity, u.Title, u.ReleaseNotes, u.Applicability, jsonText(orEmptySlice(u.Prerequisites)),
		u.State, catalog.StateFailed)
	if err != nil {
		return u, unavailable(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return u, fault.E(fault.Conflict, "update %s changed while it was being retried; try again", u.ID)
	}
	if _, err := tx.db.ExecContext(ctx, `DELETE FROM payloads WHERE update_id = $1`, u.ID); err != nil {
		return u, unavailable(err)
	}
	if u.Payloads, err = tx.insertPayloads(ctx, u.ID, nu.Payloads, stored); err != nil {
		return u, err
	}
	return u, tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "update.retry", Target: u.ID, Before: failed, After: u,
		Reason: "retry after: " + failed.FailureReason})
}

// insertPayloads writes an update's payload rows: each already stored
// counts as uploaded.
func (tx *Tx) insertPayloads(ctx context.Context, updateID string, ps []catalog.NewPayload, stored func(sha256 string) bool) ([]catalog.Payload, error) {
	out := make([]catalog.Payload, 0, len(ps))
	for i, p := range ps {
		state := catalog.PayloadPending
		if stored != nil && stored(p.SHA256) {
			state = catalog.PayloadUploaded
		}
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO payloads (update_id, position, name, sha256, size, state) VALUES ($1, $2, $3, $4, $5, $6)`,
			updateID, i, p.Name, p.SHA256, p.Size, state); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, catalog.Payload{Name: p.Name, SHA256: p.SHA256, Size: p.Size, State: state})
	}
	return out, nil
}

const updateColumns = `id, product, version, kind, classification, severity, title, release_notes,
	applicability, prerequisites, state, failure_reason, created_at, published_at, attempt, withdrawn_at, withdraw_reason`

func scanUpdate(row interface{ Scan(...any) error }) (catalog.Update, error) {
	var u catalog.Update
	var published, withdrawn sql.NullTime
	var prereqs string
	err := row.Scan(&u.ID, &u.Product, &u.Version, &u.Kind, &u.Classification, &u.Severity, &u.Title,
		&u.ReleaseNotes, &u.Applicability, &prereqs, &u.State, &u.FailureReason, &u.CreatedAt, &published, &u.Attempt,
		&withdrawn, &u.WithdrawReason)
	if err != nil {
		return u, err
	}
	u.CreatedAt = u.CreatedAt.UTC()
	u.PublishedAt, u.WithdrawnAt = timePtr(published), timePtr(withdrawn)
	if u.WithdrawnAt != nil {
		// Stored as published with the time it was withdrawn (the state
		// column's CHECK predates withdrawal; SQLite cannot alter it).
		u.State = catalog.StateWithdrawn
	}
	return u, fromJSON(prereqs, &u.Prerequisites)
}

// Update returns the update with its payloads, or NotFound.
func (q *queries) Update(ctx context.Context, id string) (catalog.Update, error) {
	u, err := scanUpdate(q.db.QueryRowContext(ctx, `SELECT `+updateColumns+` FROM updates WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return u, fault.E(fault.NotFound, "update %q not found", id)
	}
	if err != nil {
		return u, unavailable(err)
	}
	u.Payloads, err = q.payloads(ctx, id)
	return u, err
}

// UpdateByVersion returns the product's update whose version equals v.
func (q *queries) UpdateByVersion(ctx context.Context, product string, v version.Version) (catalog.Update, error) {
	return q.updateByVersion(ctx, product, v)
}

func (q *queries) updateByVersion(ctx context.Context, product string, v version.Version) (catalog.Update, error) {
	var id string
	err := q.db.QueryRowContext(ctx, `SELECT id FROM updates WHERE product = $1 AND version_key = $2`, product, v.Key()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return catalog.Update{}, fault.E(fault.NotFound, "product %q has no version %s", product, v)
	}
	if err != nil {
		return catalog.Update{}, unavailable(err)
	}
	return q.Update(ctx, id)
}

func (q *queries) payloads(ctx context.Context, updateID string) ([]catalog.Payload, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT name, sha256, size, state, sha1, md5, format_info FROM payloads WHERE update_id = $1 ORDER BY position`, updateID)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []catalog.Payload
	for rows.Next() {
		var p catalog.Payload
		var format string
		if err := rows.Scan(&p.Name, &p.SHA256, &p.Size, &p.State, &p.SHA1, &p.MD5, &format); err != nil {
			return nil, unavailable(err)
		}
		if format != "" {
			if err := fromJSON(format, &p.Format); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, unavailable(rows.Err())
}

// UpdateFilter narrows Updates.
type UpdateFilter struct {
	Product string
	// Products, when set, limits the list to these products (a scoped token).
	Products []string
	State    catalog.UpdateState
	// After is an update id: list updates created after it (pagination).
	After string
	Limit int
}

// Updates lists updates (without payloads) oldest first.
func (q *queries) Updates(ctx context.Context, f UpdateFilter) ([]catalog.Update, error) {
	where, args := []string{"1 = 1"}, []any{}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.Product != "" {
		add("product = $%d", f.Product)
	}
	if len(f.Products) > 0 {
		where = append(where, inList("product", f.Products, &args))
	}
	switch f.State {
	case "":
	case catalog.StateWithdrawn:
		where = append(where, "withdrawn_at IS NOT NULL")
	case catalog.StatePublished:
		add("state = $%d AND withdrawn_at IS NULL", f.State)
	default:
		add("state = $%d", f.State)
	}
	if f.After != "" {
		add("id > $%d", f.After)
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	args = append(args, f.Limit)
	rows, err := q.db.QueryContext(ctx, `SELECT `+updateColumns+` FROM updates WHERE `+strings.Join(where, " AND ")+
		fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []catalog.Update{}
	for rows.Next() {
		u, err := scanUpdate(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, u)
	}
	return out, unavailable(rows.Err())
}

// LastKind is the kind of the product's newest update, or "" when it has
// none: an update published without a kind takes it.
func (q *queries) LastKind(ctx context.Context, product string) (catalog.Kind, error) {
	var k catalog.Kind
	err := q.db.QueryRowContext(ctx, `SELECT kind FROM updates WHERE product = $1 ORDER BY id DESC LIMIT 1`, product).Scan(&k)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return k, unavailable(err)
}

// StorePayload marks an uploaded payload stored, with the digests its
// bytes were found to have. It returns Conflict if the payload is not
// uploaded, NotFound if it does not exist.
func (q *queries) StorePayload(ctx context.Context, updateID, sha256 string, d catalog.Digests) error {
	format := ""
	if d.Format != nil {
		format = jsonText(d.Format)
	}
	res, err := q.db.ExecContext(ctx, `UPDATE payloads SET state = $3, sha1 = $4, md5 = $5, format_info = $7 WHERE update_id = $1 AND sha256 = $2 AND state = $6`,
		updateID, sha256, catalog.PayloadStored, d.SHA1, d.MD5, catalog.PayloadUploaded, format)
	if err != nil {
		return unavailable(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	return q.SetPayloadState(ctx, updateID, sha256, catalog.PayloadUploaded, catalog.PayloadStored) // says why not
}

// SetPayloadState moves a payload from one state to another. It returns
// Conflict if the payload is not in state from, NotFound if it does not exist.
func (q *queries) SetPayloadState(ctx context.Context, updateID, sha256 string, from, to catalog.PayloadState) error {
	res, err := q.db.ExecContext(ctx, `UPDATE payloads SET state = $4 WHERE update_id = $1 AND sha256 = $2 AND state = $3`,
		updateID, sha256, from, to)
	if err != nil {
		return unavailable(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var state catalog.PayloadState
	err = q.db.QueryRowContext(ctx, `SELECT state FROM payloads WHERE update_id = $1 AND sha256 = $2`, updateID, sha256).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return fault.E(fault.NotFound, "update %q has no payload %s", updateID, sha256)
	}
	if err != nil {
		return unavailable(err)
	}
	return fault.E(fault.Conflict, "payload %s is %s, not %s", sha256, state, from)
}

// SetUpdateState moves an update from one state to another, recording a
// failure reason for StateFailed and the time for StatePublished. It returns
// Conflict if the update is not in state from.
func (q *queries) SetUpdateState(ctx context.Context, id string, from, to catalog.UpdateState, reason string) error {
	var published any
	if to == catalog.StatePublished {
		published = q.now()
	}
	res, err := q.db.ExecContext(ctx, `
		UPDATE updates SET state = $3, failure_reason = $4, published_at = COALESCE($5, published_at)
		WHERE id = $1 AND state = $2`, id, from, to, reason, published)
	if err != nil {
		return unavailable(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		u, err := q.Update(ctx, id)
		if err != nil {
			return err
		}
		return fault.E(fault.Conflict, "update %s is %s, not %s", id, u.State, from)
	}
	if to == catalog.StatePublished {
		return q.BumpGeneration(ctx)
	}
	return nil
}

// WithdrawUpdate withdraws a published update with a reason, audited;
// withdrawing one already withdrawn returns it as it is. Deployments are
// not its business: the caller cancels them, and re-signs the TUF targets
// in tx.
func (tx *Tx) WithdrawUpdate(ctx context.Context, id, reason string) (catalog.Update, error) {
	u, err := tx.Update(ctx, id)
	switch {
	case err != nil:
		return u, err
	case u.State == catalog.StateWithdrawn:
		return u, nil
	case u.State != catalog.StatePublished:
		return u, fault.E(fault.Conflict, "update %s is %s; only a published update can be withdrawn", id, u.State)
	}
	before := u
	now := tx.now()
	if _, err := tx.db.ExecContext(ctx, `UPDATE updates SET withdrawn_at = $2, withdraw_reason = $3 WHERE id = $1`, id, now, reason); err != nil {
		return u, unavailable(err)
	}
	u.State, u.WithdrawnAt, u.WithdrawReason = catalog.StateWithdrawn, &now, reason
	if err := tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "update.withdraw", Target: id,
		Before: map[string]any{"state": before.State}, After: map[string]any{"state": u.State}, Reason: reason}); err != nil {
		return u, err
	}
	return u, tx.BumpGeneration(ctx)
}

// DeleteUpdate deletes an update that no deployment ever used, with its
// payload rows, audited with its last state; it returns what was deleted.
// One that was deployed is a conflict (withdraw it instead), as is one
// publishing or named by a hold. Deleting a published update changes what
// the TUF targets must list: the caller signs them again in tx.
func (tx *Tx) DeleteUpdate(ctx context.Context, id string) (catalog.Update, error) {
	u, err := tx.Update(ctx, id)
	if err != nil {
		return u, err
	}
	if u.State == catalog.StatePublishing {
		return u, fault.E(fault.Conflict, "update %s is publishing; delete it once it is published or has failed", id)
	}
	var deployments, holds int
	if err := tx.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deployments WHERE update_id = $1`, id).Scan(&deployments); err != nil {
		return u, unavailable(err)
	}
	if deployments > 0 {
		return u, fault.E(fault.Conflict, "update %s (%s %s) has been deployed (%d deployments keep its history); withdraw it instead",
			id, u.Product, u.Version, deployments)
	}
	if err := tx.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM holds WHERE update_id = $1`, id).Scan(&holds); err != nil {
		return u, unavailable(err)
	}
	if holds > 0 {
		return u, fault.E(fault.Conflict, "update %s is named by %d holds; their history keeps it", id, holds)
	}
	for _, q := range []string{`DELETE FROM deltas WHERE to_update_id = $1 OR from_update_id = $1`, `DELETE FROM update_checks WHERE update_id = $1`,
		`DELETE FROM payloads WHERE update_id = $1`, `DELETE FROM updates WHERE id = $1`} {
		if _, err := tx.db.ExecContext(ctx, q, id); err != nil {
			return u, unavailable(err)
		}
	}
	if err := tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "update.delete", Target: id, Before: u}); err != nil {
		return u, err
	}
	return u, tx.BumpGeneration(ctx)
}

// PayloadReferenced reports whether any payload row names sha256.
func (q *queries) PayloadReferenced(ctx context.Context, sha256 string) (bool, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payloads WHERE sha256 = $1`, sha256).Scan(&n)
	return n > 0, unavailable(err)
}

// PayloadStored reports whether a stored payload has this content, so the
// content store holds it and devices may fetch it.
func (q *queries) PayloadStored(ctx context.Context, sha256 string) (bool, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payloads WHERE sha256 = $1 AND state = 'stored'`, sha256).Scan(&n)
	return n > 0, unavailable(err)
}

// BumpGeneration marks the device-visible catalog as changed.
//
// On PostgreSQL it also notifies CatalogChannel, delivered when the
// transaction commits, so every replica rebuilds its snapshot at once.
func (q *queries) BumpGeneration(ctx context.Context) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE catalog_generation SET generation = generation + 1 WHERE id = 1`); err != nil {
		return unavailable(err)
	}
	return q.notify(ctx)
}

func (q *queries) notify(ctx context.Context) error {
	if q.dialect != Postgres {
		return nil
	}
	_, err := q.db.ExecContext(ctx, `SELECT pg_notify('`+CatalogChannel+`', '')`)
	return unavailable(err)
}

// Generation returns the catalog generation.
func (q *queries) Generation(ctx context.Context) (int64, error) {
	var g int64
	err := q.db.QueryRowContext(ctx, `SELECT generation FROM catalog_generation WHERE id = 1`).Scan(&g)
	return g, unavailable(err)
}

// DeleteProduct deletes a product that has no updates (delete or, if
// deployed, keep those first) and no holds (their history names it), with
// its risk models. Audited as product.delete.
func (tx *Tx) DeleteProduct(ctx context.Context, name string) (catalog.Product, error) {
	p, err := tx.Product(ctx, name)
	if err != nil {
		return p, err
	}
	var updates, holds int
	if err := tx.db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM updates WHERE product = $1), (SELECT COUNT(*) FROM holds WHERE product = $1)`,
		name).Scan(&updates, &holds); err != nil {
		return p, unavailable(err)
	}
	switch {
	case updates > 0:
		return p, fault.E(fault.Conflict, "product %s has %d updates; delete those never deployed first (a deployed one keeps the product: withdraw it instead)", name, updates)
	case holds > 0:
		return p, fault.E(fault.Conflict, "product %s is named by %d holds; their history keeps it", name, holds)
	}
	for _, q := range []string{`DELETE FROM risk_models WHERE product = $1`, `DELETE FROM products WHERE name = $1`} {
		if _, err := tx.db.ExecContext(ctx, q, name); err != nil {
			return p, unavailable(err)
		}
	}
	if err := tx.audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "product.delete", Target: "product:" + name, Before: p}); err != nil {
		return p, err
	}
	return p, tx.bumpIf(ctx, len(p.Floors) > 0)
}

// RecordCheck stores a pipeline step's verdict on an update's publish
// attempt; recording one already recorded is a Conflict.
func (tx *Tx) RecordCheck(ctx context.Context, updateID string, c catalog.Check) error {
	_, err := tx.db.ExecContext(ctx, `INSERT INTO update_checks (update_id, attempt, step, verdict, output, checked_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		updateID, c.Attempt, c.Step, c.Verdict, c.Output, tx.now())
	if isUniqueViolation(err) {
		return fault.E(fault.Conflict, "step %s already judged attempt %d of %s", c.Step, c.Attempt, updateID)
	}
	return unavailable(err)
}

// Checks lists an update's step verdicts, oldest first.
func (q *queries) Checks(ctx context.Context, updateID string) ([]catalog.Check, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT step, attempt, verdict, output, checked_at FROM update_checks WHERE update_id = $1 ORDER BY attempt, checked_at, step`, updateID)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []catalog.Check
	for rows.Next() {
		var c catalog.Check
		if err := rows.Scan(&c.Step, &c.Attempt, &c.Verdict, &c.Output, &c.CheckedAt); err != nil {
			return nil, unavailable(err)
		}
		out = append(out, c)
	}
	return out, unavailable(rows.Err())
}
