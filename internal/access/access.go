// Package access issues and checks bearer tokens. Tokens are 256-bit random
// secrets; only their SHA-256 is stored, so a database leak reveals none.
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// Role is what a token may do. The foundation has one role; finer roles
// (publisher, release manager, viewer, agent) build on the same check.
type Role string

const RoleAdmin Role = "admin"

// tokenPrefix marks Ringmaster secrets so secret scanners can find leaks.
const tokenPrefix = "rmt_"

// Token is a stored token record.
type Token struct {
	ID        string
	Name      string
	Hash      string
	Role      Role
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// Principal is who a request acts as.
type Principal struct {
	TokenID string
	Name    string
	Role    Role
}

// Actor is how audit fields name the principal: "token:<id>(<name>)".
func (p Principal) Actor() string { return "token:" + p.TokenID + "(" + p.Name + ")" }

// NewToken returns a fresh secret and the record to store for it.
func NewToken(name string, role Role, now time.Time, ttl time.Duration) (secret string, t Token) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	secret = tokenPrefix + hex.EncodeToString(b[:])
	t = Token{ID: catalog.NewID("tok", now), Name: name, Hash: Hash(secret), Role: role, CreatedAt: now}
	if ttl > 0 {
		exp := now.Add(ttl)
		t.ExpiresAt = &exp
	}
	return secret, t
}

// Hash returns the stored form of a secret.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// WellFormed reports whether s looks like a Ringmaster token, so garbage is
// rejected before any lookup.
func WellFormed(s string) bool {
	if !strings.HasPrefix(s, tokenPrefix) || len(s) != len(tokenPrefix)+64 {
		return false
	}
	_, err := hex.DecodeString(s[len(tokenPrefix):])
	return err == nil
}

// Check decides whether a stored token may be used at now.
func Check(t Token, now time.Time) (Principal, error) {
	switch {
	case t.RevokedAt != nil:
		return Principal{}, fault.E(fault.Unauthorized, "token has been revoked")
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return Principal{}, fault.E(fault.Unauthorized, "token has expired")
	}
	return Principal{TokenID: t.ID, Name: t.Name, Role: t.Role}, nil
}
