package access

import (
	"crypto/hmac"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// An offer receipt is the server's signed word that it offered an update
// to a device: under which deployment, in which wave, at what time. The
// check-in answer carries one per offer and the device cites it in its
// events, so the server tells honest evidence from forged evidence without
// a database lookup, in any replica, even when the offer's record was lost
// in a crash. It is bound to the device and the update, so it cannot be
// moved to another device or to another update.
//
//	dep_06h1ke0eeeng29k1tc7xcnct84.0.1764576000.<32 hex: truncated HMAC-SHA256>

// Receipt is what an offer receipt says.
type Receipt struct {
	DeploymentID string
	// Wave is the wave (from 0) whose share first included the device.
	Wave int
	// At is when the offer was made (whole seconds).
	At time.Time
}

const (
	receiptDomain = "ringmaster offer receipt v1\x00"
	receiptMAC    = 16 // bytes of the HMAC kept: 128 bits
	// MaxReceiptLen bounds a receipt: a deployment id, a wave, a time and the MAC.
	MaxReceiptLen = 64 + 1 + 3 + 1 + 20 + 1 + 2*receiptMAC
)

func (k DeviceKey) receiptMAC(dst []byte, deviceID, updateID, deploymentID string, wave int, at int64) []byte {
	m := k.macs.Get().(*macState)
	in := append(m.in[:0], receiptDomain...)
	in = append(append(in, deviceID...), 0)
	in = append(append(in, updateID...), 0)
	in = append(append(in, deploymentID...), 0)
	in = append(strconv.AppendInt(in, int64(wave), 10), 0)
	m.in = strconv.AppendInt(in, at, 10)
	dst = hex.AppendEncode(dst, m.mac()[:receiptMAC])
	k.macs.Put(m)
	return dst
}

// AppendReceipt appends the receipt for offering updateID to deviceID to
// dst. It does not allocate beyond growing dst.
func (k DeviceKey) AppendReceipt(dst []byte, deviceID, updateID string, r Receipt) []byte {
	at := r.At.Unix()
	dst = append(dst, r.DeploymentID...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(r.Wave), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, at, 10)
	dst = append(dst, '.')
	return k.receiptMAC(dst, deviceID, updateID, r.DeploymentID, r.Wave, at)
}

// VerifyReceipt returns what a receipt says if the server issued it for
// deviceID and updateID; otherwise an Invalid error saying why.
func (k DeviceKey) VerifyReceipt(s, deviceID, updateID string) (Receipt, error) {
	bad := func(why string) (Receipt, error) {
		return Receipt{}, fault.E(fault.Invalid, "offer_receipt %s", why)
	}
	if s == "" {
		return bad("is missing: cite the offer_receipt of the check-in answer that offered this update")
	}
	if len(s) > MaxReceiptLen {
		return bad("is too long")
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 || !strings.HasPrefix(parts[0], "dep_") || len(parts[0]) > 64 {
		return bad("is malformed")
	}
	wave, err := strconv.Atoi(parts[1])
	if err != nil || wave < 0 || wave > 99 || strconv.Itoa(wave) != parts[1] {
		return bad("is malformed")
	}
	at, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || at <= 0 || strconv.FormatInt(at, 10) != parts[2] {
		return bad("is malformed")
	}
	var want [2 * receiptMAC]byte
	if !hmac.Equal([]byte(parts[3]), k.receiptMAC(want[:0], deviceID, updateID, parts[0], wave, at)) {
		return bad("was not issued for this device and update")
	}
	return Receipt{DeploymentID: parts[0], Wave: wave, At: time.Unix(at, 0).UTC()}, nil
}
