// Package version parses and orders update versions: dotted numbers
// ("10.0.22631.4317") and semantic versions ("1.4.0-rc.1+build.7") share one
// ordering, so a product may use either.
package version

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits on what Parse accepts, so a hostile version string costs little.
const (
	MaxLen        = 128
	maxComponents = 8
)

// Version is a parsed version. The zero Version is not valid; use Parse.
// Versions are immutable and safe for concurrent use.
type Version struct {
	raw   string
	core  []uint64
	pre   []string // semver pre-release identifiers, if any
	valid bool
}

// Parse parses s. It accepts one to eight dot-separated decimal components,
// an optional leading "v", an optional "-pre.release" and an optional
// "+build" suffix (ignored when ordering). The error says what was wrong.
func Parse(s string) (Version, error) {
	if s == "" {
		return Version{}, fmt.Errorf("version is empty")
	}
	if len(s) > MaxLen {
		return Version{}, fmt.Errorf("version is longer than %d characters", MaxLen)
	}
	rest := strings.TrimPrefix(s, "v")
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		if err := checkIdents(rest[i+1:], "build metadata", false); err != nil {
			return Version{}, fmt.Errorf("version %q: %w", s, err)
		}
		rest = rest[:i]
	}
	var pre []string
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		if err := checkIdents(rest[i+1:], "pre-release", true); err != nil {
			return Version{}, fmt.Errorf("version %q: %w", s, err)
		}
		pre = strings.Split(rest[i+1:], ".")
		rest = rest[:i]
	}
	core := make([]uint64, 0, strings.Count(rest, ".")+1)
	for i := 1; ; i++ {
		p, tail, more := strings.Cut(rest, ".")
		if i > maxComponents {
			return Version{}, fmt.Errorf("version %q has more than %d numeric components", s, maxComponents)
		}
		if p == "" || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("version %q: component %d (%q) is not a decimal number", s, i, p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return Version{}, fmt.Errorf("version %q: component %d is too large", s, i)
		}
		core = append(core, n)
		if !more {
			break
		}
		rest = tail
	}
	return Version{raw: s, core: core, pre: pre, valid: true}, nil
}

// MustParse is Parse for constants in tests and tables; it panics on error.
func MustParse(s string) Version {
	v, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return v
}

func checkIdents(s, what string, numericNoLeadingZero bool) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return fmt.Errorf("empty %s identifier", what)
		}
		for _, c := range id {
			if !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return fmt.Errorf("%s identifier %q has a character other than [0-9A-Za-z-]", what, id)
			}
		}
		if numericNoLeadingZero && len(id) > 1 && id[0] == '0' && isNumeric(id) {
			return fmt.Errorf("numeric %s identifier %q has a leading zero", what, id)
		}
	}
	return nil
}

func isNumeric(s string) bool { return s != "" && strings.TrimLeft(s, "0123456789") == "" }

// String returns the version as it was written.
func (v Version) String() string { return v.raw }

// IsZero reports whether v is the zero Version (not parsed).
func (v Version) IsZero() bool { return !v.valid }

// Key returns a canonical form: equal versions have equal keys ("1.2" and
// "1.2.0" both give "1.2"). Stores use it to keep versions of a product unique.
func (v Version) Key() string {
	n := len(v.core)
	for n > 1 && v.core[n-1] == 0 {
		n--
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(v.core[i], 10))
	}
	if len(v.pre) > 0 {
		b.WriteByte('-')
		b.WriteString(strings.Join(v.pre, "."))
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
// Missing numeric components count as zero; a pre-release is older than its
// release; pre-release identifiers order as in semver 2.0.
func (v Version) Compare(w Version) int {
	n := max(len(v.core), len(w.core))
	for i := 0; i < n; i++ {
		a, b := at(v.core, i), at(w.core, i)
		if a != b {
			if a < b {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(v.pre) == 0 && len(w.pre) == 0:
		return 0
	case len(v.pre) == 0:
		return 1
	case len(w.pre) == 0:
		return -1
	}
	for i := 0; i < min(len(v.pre), len(w.pre)); i++ {
		if c := compareIdent(v.pre[i], w.pre[i]); c != 0 {
			return c
		}
	}
	return cmpInt(len(v.pre), len(w.pre))
}

// Less reports whether v is older than w.
func (v Version) Less(w Version) bool { return v.Compare(w) < 0 }

func at(s []uint64, i int) uint64 {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func compareIdent(a, b string) int {
	an, bn := isNumeric(a), isNumeric(b)
	switch {
	case an && bn:
		if len(a) != len(b) {
			return cmpInt(len(a), len(b))
		}
		return strings.Compare(a, b)
	case an:
		return -1
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
