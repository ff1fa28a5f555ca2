package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// related returns two files that share most of their bytes at shifted
// offsets, as two builds of one program do.
func related(n int) (old, new []byte) {
	r := rand.New(rand.NewPCG(1, 2))
	old = make([]byte, n)
	for i := range old {
		old[i] = byte(r.IntN(256))
	}
	new = append([]byte("a new header that shifts everything"), old[:n/2]...)
	new = append(new, bytes.Repeat([]byte{7}, 1000)...)
	new = append(new, old[n/2+100:]...)
	return old, new
}

func TestMakeApply(t *testing.T) {
	old, new := related(3 << 20)
	d, err := Make(old, new)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) > len(new)/20 {
		t.Fatalf("delta of two files sharing nearly everything is %d bytes of %d", len(d), len(new))
	}
	got, err := Apply(old, d, int64(len(new)), sum(new))
	if err != nil || !bytes.Equal(got, new) {
		t.Fatalf("apply: %v (equal %v)", err, bytes.Equal(got, new))
	}
}

func TestApplyRefusesWhatIsNotTheTarget(t *testing.T) {
	old, new := related(1 << 20)
	d, err := Make(old, new)
	if err != nil {
		t.Fatal(err)
	}
	// Another base: the delta decodes to something else, refused by hash.
	other := bytes.Clone(old)
	other[len(other)/3] ^= 0xff
	if _, err := Apply(other, d, int64(len(new)), sum(new)); err == nil {
		t.Fatal("a delta applied to the wrong base was accepted")
	}
	// A corrupted delta.
	bad := bytes.Clone(d)
	bad[len(bad)/2] ^= 0xff
	if _, err := Apply(old, bad, int64(len(new)), sum(new)); err == nil {
		t.Fatal("a corrupted delta was accepted")
	}
	// A result larger than promised is refused before it is all in memory.
	if _, err := Apply(old, d, int64(len(new))/2, sum(new)); err == nil {
		t.Fatal("a result larger than the limit was accepted")
	}
}

func FuzzApply(f *testing.F) {
	old, new := related(64 << 10)
	d, _ := Make(old, new)
	f.Add(d)
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd garbage"))
	f.Fuzz(func(t *testing.T, delta []byte) {
		out, err := Apply(old, delta, int64(len(new)), sum(new))
		if err == nil && !bytes.Equal(out, new) {
			t.Fatal("Apply returned bytes that are not the target without an error")
		}
	})
}
