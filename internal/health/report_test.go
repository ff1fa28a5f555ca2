package health

import (
	"math"
	"testing"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

func TestNewRate(t *testing.T) {
	// Reference values of the Wilson interval (z = 1.96).
	for _, tt := range []struct {
		k, n      int64
		low, high float64
	}{
		{0, 10, 0, 0.2775}, {5, 10, 0.2366, 0.7634}, {20, 1000, 0.0130, 0.0307}, {10, 10, 0.7225, 1},
	} {
		r := NewRate(tt.k, tt.n)
		if math.Abs(r.Low-tt.low) > 5e-4 || math.Abs(r.High-tt.high) > 5e-4 || r.Value != float64(tt.k)/float64(tt.n) {
			t.Errorf("NewRate(%d, %d) = %+v, want [%v, %v]", tt.k, tt.n, r, tt.low, tt.high)
		}
	}
	if r := NewRate(0, 0); r.Low != 0 || r.High != 1 {
		t.Errorf("NewRate(0, 0) = %+v", r)
	}
}

func TestSummarize(t *testing.T) {
	r := Summarize([]Count{
		{0, telemetry.InstallSucceeded, "", 90}, {0, telemetry.InstallFailed, "", 10},
		{1, telemetry.InstallSucceeded, "", 880}, {1, telemetry.InstallFailed, "", 20}, {1, telemetry.RolledBack, "", 8},
		{1, telemetry.InstallFailed, "oem=contoso", 25}, {1, telemetry.InstallSucceeded, "oem=contoso", 5},
		{0, telemetry.InstallFailed, "oem=contoso", 3}, {1, telemetry.InstallFailed, "oem=fabrikam", 2},
	}, 1)
	if r.Overall.Failure.Events != 30 || r.Overall.Failure.Of != 1000 || len(r.Waves) != 2 || r.Waves[1].Rollback.Events != 8 ||
		r.Waves[1].Rollback.Of != 880 || r.Waves[0].Failure.Value != 0.1 {
		t.Fatalf("report = %+v", r)
	}
	if len(r.Cells) != 1 || r.Cells[0].Cell != "oem=contoso" || r.Cells[0].Failure.Events != 28 || r.Cells[0].Failure.Of != 33 {
		t.Fatalf("cells = %+v", r.Cells)
	}
}
