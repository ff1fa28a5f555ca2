package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

const tokenColumns = `id, name, hash, role, products, budget, created_by, created_at, expires_at, revoked_at`

// CreateToken stores a token record (its hash, never the secret) and audits
// its creation as actor's.
func (s *Store) CreateToken(ctx context.Context, t access.Token, actor string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		_, err := tx.db.ExecContext(ctx, `
			INSERT INTO tokens (id, name, hash, role, products, budget, created_by, created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.Name, t.Hash, t.Role, jsonText(orEmptySlice(t.Products)), t.Budget, t.CreatedBy, t.CreatedAt.UTC(), nullTime(t.ExpiresAt))
		if isUniqueViolation(err) {
			return fault.E(fault.Conflict, "token already exists")
		}
		if err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "token.create", Target: t.ID, After: t})
	})
}

func scanToken(row interface{ Scan(...any) error }) (access.Token, error) {
	var t access.Token
	var products string
	var expires, revoked sql.NullTime
	if err := row.Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &products, &t.Budget, &t.CreatedBy, &t.CreatedAt, &expires, &revoked); err != nil {
		return t, err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.ExpiresAt, t.RevokedAt = timePtr(expires), timePtr(revoked)
	return t, fromJSON(products, &t.Products)
}

// TokenByHash returns the token with this hash, or NotFound.
func (q *queries) TokenByHash(ctx context.Context, hash string) (access.Token, error) {
	t, err := scanToken(q.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fault.E(fault.NotFound, "token not found")
	}
	return t, unavailable(err)
}

// TokenByID returns a token record, or NotFound.
func (q *queries) TokenByID(ctx context.Context, id string) (access.Token, error) {
	t, err := scanToken(q.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fault.E(fault.NotFound, "no token %s", id)
	}
	return t, unavailable(err)
}

// Tokens lists every token (revoked included), oldest first.
func (q *queries) Tokens(ctx context.Context) ([]access.Token, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []access.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, t)
	}
	return out, unavailable(rows.Err())
}

// RevokeToken revokes a token at once; revoking twice is a no-op.
func (s *Store) RevokeToken(ctx context.Context, id, actor, reason string) (t access.Token, err error) {
	err = s.InTx(ctx, func(tx *Tx) error {
		before, err := scanToken(tx.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fault.E(fault.NotFound, "no token %s", id)
		}
		if err != nil {
			return unavailable(err)
		}
		t = before
		if before.RevokedAt != nil {
			return nil
		}
		now := tx.now()
		t.RevokedAt = &now
		if _, err := tx.db.ExecContext(ctx, `UPDATE tokens SET revoked_at = $1 WHERE id = $2`, now, id); err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "token.revoke", Target: id, Before: before, After: t, Reason: reason})
	})
	return t, err
}

// CountTokens returns how many tokens exist (revoked included).
func (q *queries) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, unavailable(err)
}

// Secret returns the named server secret, creating 32 random bytes on first
// use. Concurrent first uses agree: the first insert wins.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM server_secrets WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		if _, err := s.db.ExecContext(ctx, `INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			name, hex.EncodeToString(b[:])); err != nil {
			return nil, unavailable(err)
		}
		err = s.db.QueryRowContext(ctx, `SELECT value FROM server_secrets WHERE name = $1`, name).Scan(&v)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return hex.DecodeString(v)
}

// SigningKeys returns every shared signing key, sealed, by key id.
func (s *Store) SigningKeys(ctx context.Context) (map[string][]byte, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT key_id, sealed FROM signing_keys`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	keys := map[string][]byte{}
	for rows.Next() {
		var id, sealed string
		if err := rows.Scan(&id, &sealed); err != nil {
			return nil, err
		}
		keys[id] = []byte(sealed)
	}
	return keys, unavailable(rows.Err())
}

// PutSigningKey keeps a sealed signing key; a key id already kept is left
// as it is (the same key, sealed by another replica).
func (s *Store) PutSigningKey(ctx context.Context, id string, sealed []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO signing_keys (key_id, sealed, created_at) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING`,
		id, string(sealed), time.Now().UTC())
	return unavailable(err)
}
