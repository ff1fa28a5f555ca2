package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"slices"
	"strings"
	"sync"
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

// DeviceKey mints and checks device credentials. Safe for concurrent use.
type DeviceKey struct {
	macs *sync.Pool // hash.Hash: HMAC-SHA256 under the key, reset before use
}

// NewDeviceKey wraps the server's device credential key (32 random bytes).
func NewDeviceKey(key []byte) DeviceKey {
	key = slices.Clone(key)
	return DeviceKey{macs: &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

const macDomain = "ringmaster device credential v1\x00"

// mac appends the MAC of deviceID to dst.
func (k DeviceKey) mac(dst []byte, deviceID []byte) []byte {
	m := k.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(macDomain))
	m.Write(deviceID)
	dst = m.Sum(dst)
	k.macs.Put(m)
	return dst
}

// Credential returns the credential for deviceID.
func (k DeviceKey) Credential(deviceID string) string {
	return devicePrefix + credentialEncoding.EncodeToString([]byte(deviceID)) + "." + hex.EncodeToString(k.mac(nil, []byte(deviceID)))
}

// credentialEncoding is strict, so every id has exactly one spelling.
var credentialEncoding = base64.RawURLEncoding.Strict()

// maxCredential bounds what is parsed: a 128-byte id plus its MAC.
const maxCredential = 4 + 172 + 1 + 64

// Verify returns the device a credential speaks for. Only the canonical
// spelling is accepted (strict base64, lower-case hex: the fuzzer found
// that upper-case hex used to pass too), and the MAC comparison is
// constant-time.
func (k DeviceKey) Verify(cred string) (deviceID string, err error) {
	bad := fault.E(fault.Unauthorized, "invalid device credential")
	body, ok := strings.CutPrefix(cred, devicePrefix)
	if !ok || len(cred) > maxCredential {
		return "", bad
	}
	enc, macHex, ok := strings.Cut(body, ".")
	if !ok || len(macHex) != 2*sha256.Size {
		return "", bad
	}
	var got [sha256.Size]byte
	for i := range got {
		hi, ok1 := lowerHex(macHex[2*i])
		lo, ok2 := lowerHex(macHex[2*i+1])
		if !ok1 || !ok2 {
			return "", bad
		}
		got[i] = hi<<4 | lo
	}
	var idBuf [128]byte
	if credentialEncoding.DecodedLen(len(enc)) > len(idBuf) {
		return "", bad
	}
	n, err := credentialEncoding.Decode(idBuf[:], []byte(enc))
	if err != nil || n == 0 {
		return "", bad
	}
	var want [sha256.Size]byte
	if !hmac.Equal(got[:], k.mac(want[:0], idBuf[:n])) {
		return "", bad
	}
	return string(idBuf[:n]), nil
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// IsDeviceCredential reports whether s is shaped like a device credential
// (not whether it is valid).
func IsDeviceCredential(s string) bool { return strings.HasPrefix(s, devicePrefix) }
