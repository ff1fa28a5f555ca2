package targeting

import (
	"github.com/cespare/xxhash/v2"
)

// Buckets is the resolution of rollout percentages: a device's bucket is in
// [0, Buckets), and a wave at p percent admits buckets below p × Buckets/100.
const Buckets = 1_000_000

// Bucket places a device in a deployment's rollout order: a hash of the
// deployment's salt and the device id. Every replica computes the same
// bucket, and raising a percentage only ever adds devices.
func Bucket(salt, deviceID string) uint32 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(salt)
	_, _ = d.WriteString("\x00")
	_, _ = d.WriteString(deviceID)
	return uint32(d.Sum64() % Buckets)
}

// Threshold converts a percentage (0-100) to the bucket bound it admits.
func Threshold(percent float64) uint32 {
	switch {
	case percent <= 0:
		return 0
	case percent >= 100:
		return Buckets
	}
	return uint32(percent * Buckets / 100)
}

// InWave reports whether a device in bucket b is exposed at percent.
func InWave(b uint32, percent float64) bool { return b < Threshold(percent) }
