// Package access issues and checks bearer tokens and decides what each
// token may do. Tokens are 256-bit random secrets; only their SHA-256 is
// stored, so a database leak reveals none. A token has one role (a fixed
// set of permissions) and, optionally, a list of products it is limited to.
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// Role is what a token may do.
type Role string

const (
	// RoleAdmin may do everything, including managing tokens, device
	// enrollment and signing keys.
	RoleAdmin Role = "admin"
	// RolePublisher creates products and updates and publishes them.
	RolePublisher Role = "publisher"
	// RoleReleaseManager deploys, steers rollouts, and manages holds and rings.
	RoleReleaseManager Role = "release_manager"
	// RoleViewer reads everything in its scope and changes nothing.
	RoleViewer Role = "viewer"
	// RoleAgent reads and may reduce exposure at once (pause, halt, cancel,
	// hold). Widening exposure goes through plans and approvals.
	RoleAgent Role = "agent"
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleAdmin, RoleReleaseManager, RolePublisher, RoleAgent, RoleViewer}

// Permission is one kind of action. Every admin route names the one it needs.
type Permission string

const (
	// Read: catalog, deployments and their health, holds, rings, devices, explain.
	Read Permission = "read"
	// Publish: create and change products and updates, upload and publish payloads.
	Publish Permission = "publish"
	// Widen: anything that can expose more devices: create deployments,
	// resume, advance, approve, release or activate holds, change rings.
	Widen Permission = "widen"
	// Reduce: anything that only exposes fewer devices: pause, halt,
	// cancel, create a hold.
	Reduce Permission = "reduce"
	// AuditRead: read the audit log.
	AuditRead Permission = "audit:read"
	// Administer: tokens, device enrollment and revocation, signing keys.
	Administer Permission = "administer"
)

var grants = map[Role][]Permission{
	RoleAdmin:          {Read, Publish, Widen, Reduce, AuditRead, Administer},
	RoleReleaseManager: {Read, Widen, Reduce, AuditRead},
	RolePublisher:      {Read, Publish},
	RoleAgent:          {Read, Reduce, AuditRead},
	RoleViewer:         {Read},
}

// Grants reports whether role r includes permission p.
func Grants(r Role, p Permission) bool { return slices.Contains(grants[r], p) }

// ValidRole reports whether r is a known role.
func ValidRole(r Role) bool { _, ok := grants[r]; return ok }

// tokenPrefix marks Ringmaster secrets so secret scanners can find leaks.
const tokenPrefix = "rmt_"

// maxScope bounds how many products one token may be limited to.
const maxScope = 100

// Token is a stored token record.
type Token struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Hash     string   `json:"-"`
	Role     Role     `json:"role"`
	Products []string `json:"products,omitempty"`
	// Budget is how many devices the token may newly expose per day and
	// deployment through agent plans without a human's approval.
	Budget    int64      `json:"budget,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Principal is who a request acts as.
type Principal struct {
	// TokenID is the token the request authenticated with; empty for a
	// person signed in to the console through an identity provider, who
	// is named by Subject instead.
	TokenID string
	Subject string
	Name    string
	Role    Role
	// Products limits the principal to these products; empty means all.
	Products []string
	// Budget: devices newly exposed per day and deployment without approval.
	Budget int64
}

// Actor is how audit fields name the principal: "token:<id>(<name>)", or
// "oidc:<subject>(<name>)" for a person signed in through OIDC.
func (p Principal) Actor() string {
	if p.TokenID == "" && p.Subject != "" {
		return "oidc:" + p.Subject + "(" + p.Name + ")"
	}
	return "token:" + p.TokenID + "(" + p.Name + ")"
}

// Key identifies the principal for rate limits and sessions: its token,
// or its OIDC subject.
func (p Principal) Key() string {
	if p.TokenID == "" {
		return "oidc:" + p.Subject
	}
	return p.TokenID
}

// Can reports whether the principal's role grants perm.
func (p Principal) Can(perm Permission) bool { return Grants(p.Role, perm) }

// Scoped reports whether the principal is limited to some products.
func (p Principal) Scoped() bool { return len(p.Products) > 0 }

// InScope reports whether the principal may act on product.
func (p Principal) InScope(product string) bool {
	return !p.Scoped() || slices.Contains(p.Products, product)
}

// Authorize returns Forbidden unless the principal holds perm.
func (p Principal) Authorize(perm Permission) error {
	if p.Can(perm) {
		return nil
	}
	return fault.E(fault.Forbidden, "a %s token may not %s (needs the %q permission)", p.Role, describe[perm], perm)
}

// AuthorizeProduct returns Forbidden unless product is in the principal's scope.
func (p Principal) AuthorizeProduct(product string) error {
	if p.InScope(product) {
		return nil
	}
	return fault.E(fault.Forbidden, "this token is limited to products %s and may not act on %q",
		strings.Join(p.Products, ", "), product)
}

// AuthorizeUnscoped returns Forbidden for product-scoped principals, for
// things that span products (rings, tokens).
func (p Principal) AuthorizeUnscoped(what string) error {
	if !p.Scoped() {
		return nil
	}
	return fault.E(fault.Forbidden, "%s spans products; a token limited to products %s may not change it",
		what, strings.Join(p.Products, ", "))
}

var describe = map[Permission]string{
	Read:       "read",
	Publish:    "publish updates",
	Widen:      "widen a rollout's exposure",
	Reduce:     "reduce a rollout's exposure",
	AuditRead:  "read the audit log",
	Administer: "administer tokens, devices or keys",
}

// NewTokenRequest is what a caller asks for when creating a token.
type NewTokenRequest struct {
	Name     string        `json:"name"`
	Role     Role          `json:"role"`
	Products []string      `json:"products,omitempty"`
	Budget   int64         `json:"budget,omitempty"`
	TTL      time.Duration `json:"-"`
}

// Validate checks a token request.
func (r *NewTokenRequest) Validate() error {
	if r.Name == "" || len(r.Name) > 100 {
		return fault.Field("name", "a token needs a name of 1-100 characters")
	}
	for _, c := range r.Name {
		if c < 0x20 || c == 0x7f {
			return fault.Field("name", "must not contain control characters")
		}
	}
	if !ValidRole(r.Role) {
		return fault.Field("role", "%q is not a role (one of %v)", r.Role, Roles)
	}
	if len(r.Products) > maxScope {
		return fault.Field("products", "at most %d products", maxScope)
	}
	for i, p := range r.Products {
		if err := catalog.ValidateProductName("products", p); err != nil {
			return fault.Field("products", "products[%d]: %s", i, fault.Message(err))
		}
	}
	if r.TTL < 0 {
		return fault.Field("ttl", "must not be negative")
	}
	if r.Budget < 0 || r.Budget > 1e12 {
		return fault.Field("budget", "must be from 0 to 10^12 devices per day")
	}
	slices.Sort(r.Products)
	r.Products = slices.Compact(r.Products)
	return nil
}

// NewToken returns a fresh secret and the record to store for it.
func NewToken(req NewTokenRequest, createdBy string, now time.Time) (secret string, t Token) {
	secret = tokenPrefix + randomHex()
	t = Token{ID: catalog.NewID("tok", now), Name: req.Name, Hash: Hash(secret), Role: req.Role,
		Products: req.Products, Budget: req.Budget, CreatedAt: now, CreatedBy: createdBy}
	if req.TTL > 0 {
		exp := now.Add(req.TTL)
		t.ExpiresAt = &exp
	}
	return secret, t
}

// RandomSecret returns 256 random bits in hex.
func RandomSecret() string { return randomHex() }

func randomHex() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// Hash returns the stored form of a secret.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// WellFormed reports whether s looks like a Ringmaster token, so garbage is
// rejected before any lookup.
func WellFormed(s string) bool { return wellFormed(s, tokenPrefix) }

func wellFormed(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) != len(prefix)+64 {
		return false
	}
	_, err := hex.DecodeString(s[len(prefix):])
	return err == nil
}

// Check decides whether a stored token may be used at now for secret.
// The lookup is by hash; the final comparison is constant-time anyway, so
// no timing difference depends on how much of a guess was right.
func Check(t Token, secret string, now time.Time) (Principal, error) {
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(Hash(secret))) != 1 {
		return Principal{}, fault.E(fault.Unauthorized, "unknown token")
	}
	return Active(t, now)
}

// Active returns the principal of a stored token that is neither revoked
// nor expired at now (a console session made with the token rechecks it
// on every request, so revoking the token ends the session too).
func Active(t Token, now time.Time) (Principal, error) {
	switch {
	case t.RevokedAt != nil:
		return Principal{}, fault.E(fault.Unauthorized, "token has been revoked")
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return Principal{}, fault.E(fault.Unauthorized, "token has expired")
	}
	return Principal{TokenID: t.ID, Name: t.Name, Role: t.Role, Products: t.Products, Budget: t.Budget}, nil
}
