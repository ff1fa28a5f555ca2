package duration

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * Day, "365d": 365 * Day,
		"1.5d": 36 * time.Hour, "1d12h": 36 * time.Hour, "0": 0, "0d": 0, " 2d ": 2 * Day,
	} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1x", "-1d", "-5m", "1d-5m", "1e3d", "NaNd", "Infd", "1dd", "d1h", "99999999999d", "1d 2h"} {
		if got, err := Parse(in); err == nil || !strings.Contains(err.Error(), "such as 90s, 30m, 24h or 7d") {
			t.Errorf("Parse(%q) = %v, %v; want a clear error", in, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{7 * Day: "7d", 36 * time.Hour: "36h0m0s", 0: "0s"} {
		if got := Format(d); got != want {
			t.Errorf("Format(%v) = %q, want %q", d, got, want)
		}
		if back, err := Parse(Format(d)); err != nil || back != d {
			t.Errorf("Parse(Format(%v)) = %v, %v", d, back, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "90s", "1.5d", "-1d", "1e9d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err == nil && d < 0 {
			t.Fatalf("Parse(%q) = %v: negative", s, d)
		}
	})
}
