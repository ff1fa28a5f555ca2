package health

import (
	"math"
	"math/rand/v2"
	"testing"
)

func outcome(ok, failed int64) map[string]int64 {
	return map[string]int64{"install_succeeded": ok, "install_failed": failed}
}

func TestLocalize(t *testing.T) {
	base := Baseline{Failure: 0.02, Rollback: 0.01, Crash: 0.01}
	// contoso devices fail half the time; everyone else at the baseline.
	cells := []CellDevices{
		{"oem=contoso", outcome(100, 100)},
		{"oem=fabrikam", outcome(2940, 60)},
		{"arch=x64", outcome(1520, 130)},
		{"arch=arm64", outcome(1520, 30)},
		{"arch=x64|oem=contoso", outcome(50, 100)}, // as bad, but less general
		{"oem=other", outcome(10, 10)},
	}
	overall := outcome(3040, 160)
	loc, ok := Localize(DefaultGate, base, overall, cells, 0)
	// fabrikam and both arch cells hold more than MaxCohortShare of the
	// devices: only contoso and its pair are candidates (2 cells x 3 metrics).
	if !ok || loc.Cell != "oem=contoso" || loc.Rest.Verdict == Regressed || loc.Tested != 6 {
		t.Fatalf("localization = %+v, %v", loc, ok)
	}
	// A regression confined to 40% of the devices is too broad to hold.
	broad := []CellDevices{{"oem=contoso", outcome(1100, 100)}, {"oem=fabrikam", outcome(1760, 40)}}
	if loc, ok := Localize(DefaultGate, base, outcome(2860, 140), broad, 0); ok {
		t.Fatalf("a 40%% cell was held as a cohort: %+v", loc)
	}
	// A fleet-wide regression is not localized.
	wide := []CellDevices{{"oem=contoso", outcome(900, 100)}, {"oem=fabrikam", outcome(900, 100)}}
	if loc, ok := Localize(DefaultGate, base, outcome(1800, 200), wide, 0); ok {
		t.Fatalf("fleet-wide regression localized to %+v", loc)
	}
	// Small noisy cells do not pass the family-wise threshold.
	noisy := []CellDevices{{"oem=a", outcome(8, 2)}, {"oem=b", outcome(1990, 40)}}
	if loc, ok := Localize(DefaultGate, base, outcome(1998, 42), noisy, 0); ok {
		t.Fatalf("noise localized to %+v", loc)
	}
}

// TestPriorTest: a cell failing as it did in the previous release is
// rarely called worse however often it is looked at (alpha 1%, 200 looks
// per cell over 300 cells), and a cell failing five times its previous
// rate is caught within a few hundred reports.
func TestPriorTest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	thr := math.Log(1 / 0.01)
	falsely := 0
	for range 300 {
		p := 0.01 + 0.06*rng.Float64() // cells differ by nature
		var k0 int64
		for range 1500 {
			if rng.Float64() < p {
				k0++
			}
		}
		var k, n int64
		for n < 10000 {
			n++
			if rng.Float64() < p {
				k++
			}
			if n%50 == 0 && PriorTest("failure", k, n, k0, 1500).LogLRWorse >= thr {
				falsely++
				break
			}
		}
	}
	if falsely > 6 {
		t.Errorf("%d of 300 cells as good as before called worse", falsely)
	}
	if r := PriorTest("failure", 30, 300, 30, 1500); r.LogLRWorse < thr || r.Baseline != 0.02 || r.Observed.Value != 0.1 {
		t.Errorf("10%% against 2%%: %+v", r)
	}
}
