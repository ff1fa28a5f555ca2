package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// sessionView is what the audit log records of a session: who and until
// when, never the hash or the anti-forgery token.
type sessionView struct {
	Actor     string   `json:"actor"`
	Role      string   `json:"role"`
	Products  []string `json:"products,omitempty"`
	ExpiresAt string   `json:"expires_at"`
}

func viewSession(s access.Session) sessionView {
	return sessionView{Actor: s.Principal.Actor(), Role: string(s.Principal.Role), Products: s.Principal.Products,
		ExpiresAt: s.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")}
}

// CreateSession stores a console session, audits the sign-in and removes
// sessions that have expired.
func (s *Store) CreateSession(ctx context.Context, se access.Session) error {
	p := se.Principal
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE expires_at <= $1`, se.CreatedAt); err != nil {
			return unavailable(err)
		}
		if _, err := tx.db.ExecContext(ctx, `
			INSERT INTO console_sessions (hash, csrf, token_id, subject, name, role, products, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			se.Hash, se.CSRF, p.TokenID, p.Subject, p.Name, string(p.Role), jsonText(orEmptySlice(p.Products)), se.CreatedAt.UTC(), se.ExpiresAt.UTC()); err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, p.Actor(), audit.Change{Action: "console.sign_in", Target: p.Key(), After: viewSession(se)})
	})
}

// Session returns the session with this hash, or NotFound when there is
// none (never made, signed out or expired).
func (q *queries) Session(ctx context.Context, hash string) (access.Session, error) {
	var se access.Session
	var products string
	err := q.db.QueryRowContext(ctx, `SELECT hash, csrf, token_id, subject, name, role, products, created_at, expires_at
		FROM console_sessions WHERE hash = $1 AND expires_at > $2`, hash, q.now()).
		Scan(&se.Hash, &se.CSRF, &se.Principal.TokenID, &se.Principal.Subject, &se.Principal.Name, &se.Principal.Role,
			&products, &se.CreatedAt, &se.ExpiresAt)
	if errors.Is(err, sql.ErrNoRows) {
		return se, fault.E(fault.Unauthorized, "the session has ended; sign in again")
	}
	if err != nil {
		return se, unavailable(err)
	}
	se.CreatedAt, se.ExpiresAt = se.CreatedAt.UTC(), se.ExpiresAt.UTC()
	return se, fromJSON(products, &se.Principal.Products)
}

// EndSession deletes a session (sign-out) and audits it; ending one that
// is already gone is not an error.
func (s *Store) EndSession(ctx context.Context, se access.Session) error {
	return s.InTx(ctx, func(tx *Tx) error {
		res, err := tx.db.ExecContext(ctx, `DELETE FROM console_sessions WHERE hash = $1`, se.Hash)
		if err != nil {
			return unavailable(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		return tx.audit(ctx, se.Principal.Actor(), audit.Change{Action: "console.sign_out", Target: se.Principal.Key(), Before: viewSession(se)})
	})
}
