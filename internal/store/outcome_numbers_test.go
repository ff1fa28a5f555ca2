package store

import (
	"testing"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Every outcome has a code of its own, in the range device_outcomes'
// CHECK constraint admits, and reads back as itself.
func TestOutcomeCodes(t *testing.T) {
	seen := map[int]telemetry.Type{}
	for _, o := range telemetry.Types {
		c, ok := outcomeCodes[o]
		if !ok || c < 1 || c > 9 { // migration 23's CHECK (outcome BETWEEN 1 AND 9)
			t.Fatalf("%s has code %d (%t)", o, c, ok)
		}
		if other, dup := seen[c]; dup {
			t.Fatalf("%s and %s share code %d", o, other, c)
		}
		seen[c] = o
		if outcomeOf(c) != o {
			t.Fatalf("outcomeOf(%d) = %q, want %q", c, outcomeOf(c), o)
		}
	}
	if len(outcomeCodes) != len(telemetry.Types) {
		t.Fatalf("%d codes for %d outcomes", len(outcomeCodes), len(telemetry.Types))
	}
}
