package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// CreateToken stores a token record (its hash, never the secret).
func (q *queries) CreateToken(ctx context.Context, t access.Token) error {
	_, err := q.db.ExecContext(ctx, `
		INSERT INTO tokens (id, name, hash, role, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.ID, t.Name, t.Hash, t.Role, t.CreatedAt.UTC(), nullTime(t.ExpiresAt))
	if isUniqueViolation(err) {
		return fault.E(fault.Conflict, "token already exists")
	}
	return unavailable(err)
}

// TokenByHash returns the token with this hash, or NotFound.
func (q *queries) TokenByHash(ctx context.Context, hash string) (access.Token, error) {
	var t access.Token
	var expires, revoked sql.NullTime
	err := q.db.QueryRowContext(ctx, `SELECT id, name, hash, role, created_at, expires_at, revoked_at FROM tokens WHERE hash = $1`, hash).
		Scan(&t.ID, &t.Name, &t.Hash, &t.Role, &t.CreatedAt, &expires, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return t, fault.E(fault.NotFound, "token not found")
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.ExpiresAt, t.RevokedAt = timePtr(expires), timePtr(revoked)
	return t, unavailable(err)
}

// CountTokens returns how many tokens exist (revoked included).
func (q *queries) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, unavailable(err)
}
