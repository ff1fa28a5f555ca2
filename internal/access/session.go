package access

import (
	"crypto/subtle"
	"time"
)

// SessionPrefix starts every console session secret (the cookie's value).
const SessionPrefix = "rms_"

// Session is a person signed in to the console. Its secret lives only in
// the browser's cookie; the server keeps its hash, like a token's. A
// session made with a token names the token, whose role and scope are
// read afresh on every request; one made through OIDC carries the role
// and scope its identity provider's groups mapped to at sign-in.
type Session struct {
	Hash string
	// CSRF is the anti-forgery token every form of this session carries.
	CSRF      string
	Principal Principal
	CreatedAt time.Time
	ExpiresAt time.Time
}

// NewSession starts a session for p that lasts ttl; the secret goes in the
// cookie and nowhere else.
func NewSession(p Principal, now time.Time, ttl time.Duration) (secret string, s Session) {
	secret = SessionPrefix + randomHex()
	now = now.UTC().Truncate(time.Microsecond)
	return secret, Session{Hash: Hash(secret), CSRF: randomHex(), Principal: p, CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

// WellFormedSession reports whether s looks like a session secret.
func WellFormedSession(s string) bool { return wellFormed(s, SessionPrefix) }

// CheckCSRF reports whether a form's anti-forgery token is this session's,
// in constant time.
func (s Session) CheckCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(token)) == 1
}
