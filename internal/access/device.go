package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// Device authentication has two secrets:
//
//   - An enrollment key (rme_…) is a fleet-wide secret baked into images or
//     handed to provisioning; it can only turn a device id into a device
//     credential. It is stored hashed, expires and can be revoked.
//   - A device credential (rmd_…) names one device and carries an HMAC of
//     its id under a server key, so the server checks it without a database
//     lookup on the check-in path. A stolen credential speaks only for its
//     own device; a compromised device is revoked by id.

const (
	enrollPrefix = "rme_"
	devicePrefix = "rmd_"
)

// EnrollmentKey is a stored enrollment key record.
type EnrollmentKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hash      string     `json:"-"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewEnrollmentKey returns a fresh enrollment secret and its record.
func NewEnrollmentKey(name, createdBy string, now time.Time, ttl time.Duration) (secret string, k EnrollmentKey) {
	secret = enrollPrefix + randomHex()
	k = EnrollmentKey{ID: catalog.NewID("enr", now), Name: name, Hash: Hash(secret), CreatedBy: createdBy, CreatedAt: now}
	if ttl > 0 {
		exp := now.Add(ttl)
		k.ExpiresAt = &exp
	}
	return secret, k
}

// WellFormedEnrollment reports whether s looks like an enrollment key.
func WellFormedEnrollment(s string) bool { return wellFormed(s, enrollPrefix) }

// CheckEnrollment decides whether an enrollment key may be used at now.
func CheckEnrollment(k EnrollmentKey, now time.Time) error {
	switch {
	case k.RevokedAt != nil:
		return fault.E(fault.Unauthorized, "enrollment key has been revoked")
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt):
		return fault.E(fault.Unauthorized, "enrollment key has expired")
	}
	return nil
}

// DeviceKey mints and checks device credentials.
type DeviceKey struct{ key []byte }

// NewDeviceKey wraps the server's device credential key (32 random bytes).
func NewDeviceKey(key []byte) DeviceKey { return DeviceKey{key: key} }

func (k DeviceKey) mac(deviceID string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte("ringmaster device credential v1\x00"))
	m.Write([]byte(deviceID))
	return m.Sum(nil)
}

// Credential returns the credential for deviceID.
func (k DeviceKey) Credential(deviceID string) string {
	return devicePrefix + base64.RawURLEncoding.EncodeToString([]byte(deviceID)) + "." + hex.EncodeToString(k.mac(deviceID))
}

// maxCredential bounds what is parsed: a 128-byte id plus its MAC.
const maxCredential = 4 + 172 + 1 + 64

// Verify returns the device a credential speaks for. The MAC comparison is
// constant-time.
func (k DeviceKey) Verify(cred string) (deviceID string, err error) {
	bad := fault.E(fault.Unauthorized, "invalid device credential")
	body, ok := strings.CutPrefix(cred, devicePrefix)
	if !ok || len(cred) > maxCredential {
		return "", bad
	}
	enc, macHex, ok := strings.Cut(body, ".")
	if !ok {
		return "", bad
	}
	id, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(id) == 0 || len(id) > 128 || len(macHex) != 64 {
		return "", bad
	}
	// Compare the whole credential with the one minted for this id, so only
	// the canonical spelling is accepted (the fuzzer found that upper-case
	// hex would otherwise pass), in constant time.
	if subtle.ConstantTimeCompare([]byte(k.Credential(string(id))), []byte(cred)) != 1 {
		return "", bad
	}
	return string(id), nil
}

// IsDeviceCredential reports whether s is shaped like a device credential
// (not whether it is valid).
func IsDeviceCredential(s string) bool { return strings.HasPrefix(s, devicePrefix) }
