package health

import "testing"

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
