// Package duration reads the durations people write: Go's ("90s", "1h30m")
// and days ("7d", "1d12h"), everywhere a duration is read (flags, the
// config file, the environment, the API), with one error that says what
// is accepted.
package duration

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Day is 24 hours: the unit "d" (calendar days and daylight saving do not
// enter into lifetimes and bake times).
const Day = 24 * time.Hour

// Parse reads s: a Go duration, optionally led by a number of days
// ("365d", "1.5d", "1d12h"). Negative durations are refused.
func Parse(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errorf(s)
	}
	var d time.Duration
	if days, rest, ok := strings.Cut(in, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 || math.IsInf(n, 0) || n*float64(Day) > math.MaxInt64 || strings.ContainsAny(days, "eEnN_+") {
			return 0, errorf(s)
		}
		d, in = time.Duration(n*float64(Day)), rest
		if in == "" {
			return d, nil
		}
	}
	v, err := time.ParseDuration(in)
	if err != nil || v < 0 || d > math.MaxInt64-v {
		return 0, errorf(s)
	}
	return d + v, nil
}

func errorf(s string) error {
	return fmt.Errorf("%q is not a duration: write a number and a unit, such as 90s, 30m, 24h or 7d", s)
}

// Format writes d the way people read it: whole days as "7d", else Go's
// form ("36h0m0s").
func Format(d time.Duration) string {
	if d > 0 && d%Day == 0 {
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}

// Value is a command-line flag holding a duration that accepts days.
type Value time.Duration

// Set implements pflag.Value.
func (v *Value) Set(s string) error {
	d, err := Parse(s)
	if err != nil {
		return err
	}
	*v = Value(d)
	return nil
}

func (v *Value) String() string { return Format(time.Duration(*v)) }

// Type implements pflag.Value.
func (v *Value) Type() string { return "duration" }
