package catalog

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// idGrammar is the id grammar ValidateID's loop implements.
var idGrammar = regexp.MustCompile(`^[a-z]{2,4}_[0-9a-z]{26}$`)

func TestValidateID(t *testing.T) {
	id := NewID("dep", time.Now())
	if err := ValidateID("deployment_id", "dep", id); err != nil {
		t.Fatalf("a new id: %v", err)
	}
	for _, bad := range []string{"", "dep_", "upd_" + id[4:], "dep-" + id[4:], id + "0", id[:len(id)-1],
		"dep_" + strings.ToUpper(id[4:]), "dep_" + strings.Repeat("é", 13), strings.Repeat("d", 5) + id[3:]} {
		if ValidateID("deployment_id", "dep", bad) == nil {
			t.Errorf("%q is accepted as a dep id", bad)
		}
	}
}

func FuzzValidateID(f *testing.F) {
	f.Add("dep", NewID("dep", time.Now()))
	f.Add("upd", "upd_0123456789abcdefghijklmnop")
	f.Add("x", "x_0123456789abcdefghijklmnop")
	f.Add("abcde", "abcde_0123456789abcdefghijklmnop")
	f.Fuzz(func(t *testing.T, prefix, s string) {
		want := idGrammar.MatchString(s) && strings.HasPrefix(s, prefix+"_")
		if got := ValidateID("id", prefix, s) == nil; got != want {
			t.Fatalf("ValidateID(%q, %q) = %v, the grammar says %v", prefix, s, got, want)
		}
	})
}
