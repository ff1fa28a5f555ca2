package access

import (
	"crypto/hmac"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// A download link lets a device whose client sends no credential on
// downloads (the Mender client) fetch one payload until a time: the link
// names the payload, the device and the expiry, and carries their MAC, so
// any replica checks it without a lookup and it cannot be moved to
// another payload or stretched.

const linkDomain = "ringmaster download link v1\x00"

func (k DeviceKey) linkMAC(dst []byte, sha256Hex, deviceID string, expires int64) []byte {
	m := k.macs.Get().(*macState)
	in := append(m.in[:0], linkDomain...)
	in = append(append(in, sha256Hex...), 0)
	in = append(append(in, deviceID...), 0)
	m.in = strconv.AppendInt(in, expires, 10)
	dst = hex.AppendEncode(dst, m.mac()[:receiptMAC])
	k.macs.Put(m)
	return dst
}

// LinkSignature signs a link to the payload sha256Hex for deviceID that
// expires at expires (Unix seconds).
func (k DeviceKey) LinkSignature(sha256Hex, deviceID string, expires int64) string {
	return string(k.linkMAC(nil, sha256Hex, deviceID, expires))
}

// VerifyLink checks a link's signature and that it has not expired at
// now; the error (Forbidden) says which failed.
func (k DeviceKey) VerifyLink(sha256Hex, deviceID string, expires int64, sig string, now time.Time) error {
	var want [2 * receiptMAC]byte
	if !hmac.Equal([]byte(sig), k.linkMAC(want[:0], sha256Hex, deviceID, expires)) {
		return fault.E(fault.Forbidden, "the download link's signature does not match it")
	}
	if now.Unix() >= expires {
		return fault.E(fault.Forbidden, "the download link expired at %s; ask for the deployment again for a new one", time.Unix(expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}
