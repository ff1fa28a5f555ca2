package access

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"slices"
	"strconv"
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
//   - A device credential (rmd_…) names one device and a generation and
//     carries an HMAC of both under a server key, so the server checks it
//     without a database lookup on the check-in path. A device id is
//     enrolled once: enrolling it again is refused until an admin resets
//     the device, which starts the next generation and refuses every
//     earlier credential. A stolen credential speaks only for its own
//     device; a compromised device is reset or revoked by id.

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
	// MaxDevices, when positive, is how many devices the key may enroll;
	// Enrolled is how many it has (a reset gives its device's place back).
	MaxDevices int64 `json:"max_devices,omitempty"`
	Enrolled   int64 `json:"enrolled"`
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
	macs *sync.Pool // *macState: HMAC-SHA256 under the key, reset before use
}

// NewDeviceKey wraps the server's device credential key (32 random bytes).
func NewDeviceKey(key []byte) DeviceKey {
	key = slices.Clone(key)
	return DeviceKey{macs: &sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key), in: make([]byte, 0, 512)} }}}
}

// macState is a pooled HMAC with room for its input and sum, so that
// computing a MAC allocates nothing (slices passed to an interface's
// methods escape to the heap).
type macState struct {
	h   hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// mac returns the MAC of m.in (valid until the state goes back to the pool).
func (m *macState) mac() []byte {
	m.h.Reset()
	m.h.Write(m.in)
	return m.h.Sum(m.sum[:0])
}

const macDomain = "ringmaster device credential v1\x00"

// mac appends the MAC of deviceID at generation gen to dst. Generation 0
// is the MAC of the id alone (credentials minted before resets existed
// keep working); later generations add the number.
func (k DeviceKey) mac(dst []byte, deviceID []byte, gen int64) []byte {
	m := k.macs.Get().(*macState)
	m.in = append(append(m.in[:0], macDomain...), deviceID...)
	if gen > 0 {
		m.in = strconv.AppendInt(append(m.in, 0), gen, 10)
	}
	dst = append(dst, m.mac()...)
	k.macs.Put(m)
	return dst
}

// Credential returns deviceID's credential of generation gen. A device is
// handed one credential per generation (enrollment); an admin's reset
// starts the next generation and refuses every earlier one.
func (k DeviceKey) Credential(deviceID string, gen int64) string {
	mid := ""
	if gen > 0 {
		mid = strconv.FormatInt(gen, 10) + "."
	}
	return devicePrefix + credentialEncoding.EncodeToString([]byte(deviceID)) + "." + mid + hex.EncodeToString(k.mac(nil, []byte(deviceID), gen))
}

// credentialEncoding is strict, so every id has exactly one spelling.
var credentialEncoding = base64.RawURLEncoding.Strict()

// maxCredential bounds what is parsed: a 128-byte id, a generation and
// its MAC.
const maxCredential = 4 + 172 + 1 + 19 + 1 + 64

// Verify returns the device a credential speaks for and the credential's
// generation (whether that generation is still current is the caller's
// question: see delivery.Snapshot.CredentialCurrent). Only the canonical
// spelling is accepted (strict base64, lower-case hex, a generation
// without leading zeros: the fuzzer found that upper-case hex used to pass
// too), and the MAC comparison is constant-time.
func (k DeviceKey) Verify(cred string) (deviceID string, gen int64, err error) {
	bad := fault.E(fault.Unauthorized, "invalid device credential")
	body, ok := strings.CutPrefix(cred, devicePrefix)
	if !ok || len(cred) > maxCredential {
		return "", 0, bad
	}
	enc, rest, ok := strings.Cut(body, ".")
	if !ok {
		return "", 0, bad
	}
	macHex := rest
	if g, m, ok := strings.Cut(rest, "."); ok {
		if gen, ok = parseGeneration(g); !ok {
			return "", 0, bad
		}
		macHex = m
	}
	got, ok := parseMAC(macHex, sha256.Size)
	if !ok {
		return "", 0, bad
	}
	var idBuf [128]byte
	if credentialEncoding.DecodedLen(len(enc)) > len(idBuf) {
		return "", 0, bad
	}
	n, err := credentialEncoding.Decode(idBuf[:], []byte(enc))
	if err != nil || n == 0 {
		return "", 0, bad
	}
	var want [sha256.Size]byte
	if !hmac.Equal(got[:sha256.Size], k.mac(want[:0], idBuf[:n], gen)) {
		return "", 0, bad
	}
	return string(idBuf[:n]), gen, nil
}

// parseGeneration reads a canonical positive decimal generation.
func parseGeneration(s string) (int64, bool) {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// parseMAC decodes exactly size bytes of lower-case hex.
func parseMAC(s string, size int) (out [sha256.Size]byte, ok bool) {
	if len(s) != 2*size {
		return out, false
	}
	for i := 0; i < size; i++ {
		hi, ok1 := lowerHex(s[2*i])
		lo, ok2 := lowerHex(s[2*i+1])
		if !ok1 || !ok2 {
			return out, false
		}
		out[i] = hi<<4 | lo
	}
	return out, true
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
