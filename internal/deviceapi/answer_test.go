package deviceapi

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// TestEventsAnswer: the events answer, written without reflection, reads
// back as what encoding/json makes of the same map, awkward strings
// included.
func TestEventsAnswer(t *testing.T) {
	results := []telemetry.Result{
		{EventID: "e1", Index: 0, Status: "accepted"},
		{Index: 1, Status: "rejected", Error: `an event must be an object`},
		{EventID: "e\"2\\", Index: 2, Status: "rejected", Error: "device_id \"ü<&>\u2028\x01\" is not a valid device id"},
		{EventID: "e3", Index: 3, Status: "not_offered", Error: "cut short: \xe2\x82"},
	}
	for _, rs := range [][]telemetry.Result{results, results[:1], {}} {
		got := appendEventsAnswer(nil, 7, 1, 2, rs)
		want, err := json.Marshal(map[string]any{"accepted": 7, "rejected": 2, "not_offered": 1, "results": rs})
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(got) || got[len(got)-1] != '\n' {
			t.Fatalf("not one JSON value and a newline: %q", got)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("answer\n%s\nwant (as encoding/json)\n%s", got, want)
		}
	}
}
