// Package delta makes and applies binary deltas: zstd "patch-from"
// frames whose window covers the old file, so every unchanged run of the
// new file is a back-reference into the old one. Both sides hold the old
// and new files in memory, which bounds the payloads that get a delta
// (MaxInput).
package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/bits"

	"github.com/klauspost/compress/zstd"
)

// MaxInput is the largest old or new file a delta is made from or applied
// to (zstd's largest raw dictionary; and both files are held in memory).
const MaxInput = 1 << 30

// window is the smallest zstd window (a power of two) covering n bytes of
// history plus the new file.
func window(n int) int {
	return max(zstd.MinWindowSize, 1<<bits.Len(uint(n)))
}

// Make returns a delta that turns old into new. It compresses at zstd's
// best level: its larger match tables find far more of a big old file
// (a 68 MB pair of Go builds: 35% of the new file, against 46% at the
// default "better" level and 46% compressed alone), and deltas are made
// once, in the background, then fetched by every device.
func Make(old, new []byte) ([]byte, error) {
	if len(old) > MaxInput || len(new) > MaxInput {
		return nil, fmt.Errorf("delta: files larger than %d bytes are not supported", MaxInput)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(min(window(max(len(old), len(new))), zstd.MaxWindowSize)),
		zstd.WithEncoderDictRaw(0, old), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(new, make([]byte, 0, len(new)/4)), nil
}

// Apply applies a delta made by Make to old. The result may be at most
// maxSize bytes (a delta is untrusted until its result is verified) and
// must have SHA-256 wantSHA256 (hex); anything else is an error.
func Apply(old, delta []byte, maxSize int64, wantSHA256 string) ([]byte, error) {
	if len(old) > MaxInput || maxSize > MaxInput {
		return nil, fmt.Errorf("delta: files larger than %d bytes are not supported", MaxInput)
	}
	dec, err := zstd.NewReader(bytes.NewReader(nil), zstd.WithDecoderDictRaw(0, old), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(uint64(max(maxSize, 1))), zstd.WithDecoderMaxWindow(uint64(window(max(len(old), int(maxSize))))))
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(delta, make([]byte, 0, maxSize))
	if err != nil {
		return nil, fmt.Errorf("delta does not apply: %w", err)
	}
	if sum := sha256.Sum256(out); hex.EncodeToString(sum[:]) != wantSHA256 {
		return nil, fmt.Errorf("delta result has SHA-256 %x, not %s", sum, wantSHA256)
	}
	return out, nil
}
