package version

import (
	"testing"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"10.0.22631.4317", "10.0.22631.4317", 0},
		{"10.0.22631.4317", "10.0.22631.4318", -1},
		{"10.0.22631.4317", "10.0.22621.9999", 1},
		{"10.0.22631.4317", "10.0.22631", 1},
		{"1.0", "1.0.0", 0},
		{"v1.2.3", "1.2.3", 0},
		{"1.2.3+build.5", "1.2.3+build.9", 0},
		{"1.10.0", "1.9.0", 1},
		{"1.0.0-alpha", "1.0.0", -1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
		{"1.0.0-alpha.beta", "1.0.0-beta", -1},
		{"1.0.0-beta.2", "1.0.0-beta.11", -1},
		{"1.0.0-beta.11", "1.0.0-rc.1", -1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"18446744073709551615", "18446744073709551614", 1},
	}
	for _, tt := range tests {
		a, b := MustParse(tt.a), MustParse(tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := b.Compare(a); got != -tt.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
		if (a.Key() == b.Key()) != (tt.want == 0) {
			t.Errorf("Key(%q)=%q Key(%q)=%q disagree with Compare=%d", tt.a, a.Key(), tt.b, b.Key(), tt.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"", "1..2", ".1", "1.", "1.2.x", "abc", "1.2.3-", "1.2.3+", "1.2.3-01",
		"1.2.3-a..b", "1.2.3-a_b", "1 .2", "1.2.3.4.5.6.7.8.9", "18446744073709551616",
		"../../etc/passwd", "1.0\x00", string(make([]byte, MaxLen+1)),
	} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"1.0.0", "10.0.22631.4317", "1.0.0-rc.1+b", "v2", "1.0.0-01", "x"} {
		f.Add(s, "1.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := Parse(a)
		vb, errB := Parse(b)
		if errA != nil || errB != nil {
			return
		}
		if va.Compare(vb) != -vb.Compare(va) {
			t.Fatalf("Compare not antisymmetric for %q, %q", a, b)
		}
		if (va.Compare(vb) == 0) != (va.Key() == vb.Key()) {
			t.Fatalf("Key and Compare disagree for %q, %q", a, b)
		}
		// The key must itself parse back to an equal version.
		vk, err := Parse(va.Key())
		if err != nil || vk.Compare(va) != 0 {
			t.Fatalf("Key %q of %q does not round-trip: %v", va.Key(), a, err)
		}
	})
}
