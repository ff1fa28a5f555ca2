package health

import (
	"math"
	"math/rand/v2"
	"testing"
)

func devicesOf(ok, failed, offered int64) map[string]int64 {
	return map[string]int64{"install_succeeded": ok, "install_failed": failed, "offered": offered}
}

func TestEvaluate(t *testing.T) {
	base := Baseline{Failure: 0.02, Rollback: 0.01, Crash: 0.01, Source: "declared"}
	for _, tt := range []struct {
		name string
		dev  map[string]int64
		want Verdict
	}{
		{"no data", devicesOf(0, 0, 0), Inconclusive},
		{"little data", devicesOf(48, 2, 50), Inconclusive},
		{"clearly worse", devicesOf(900, 100, 1000), Regressed},
		{"3% vs 2% with lots of data", devicesOf(29100, 900, 30000), Regressed},
		{"as good, plenty of data", devicesOf(19600, 400, 20000), Healthy},
		{"as good, but most devices silent", devicesOf(19600, 400, 60000), Inconclusive},
	} {
		r := Evaluate(DefaultGate, base, tt.dev, 0)
		if r.Verdict != tt.want {
			t.Errorf("%s: %s (%s), want %s", tt.name, r.Verdict, r.Summary, tt.want)
		}
		if len(r.Tests) != 3 || r.Summary == "" {
			t.Errorf("%s: result lacks its numbers: %+v", tt.name, r)
		}
	}
	r := Evaluate(DefaultGate, base, map[string]int64{"install_succeeded": 5000, "install_failed": 100, "rolled_back": 200, "offered": 5100}, 2)
	if r.Verdict != Regressed || r.Tests[1].Verdict != Regressed || r.Tests[0].Verdict == Regressed {
		t.Fatalf("rollback regression: %+v", r)
	}
}

// TestFamilyWiseAlpha: a release exactly as good as its baseline on all
// three metrics, checked after every 20 reports up to 5,000 devices, is
// called regressed on any of them no more often than alpha: the metrics
// share it (alphaShares).
func TestFamilyWiseAlpha(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	cfg := DefaultGate
	cfg.Alpha = 0.1
	base := Baseline{Failure: 0.02, Rollback: 0.01, Crash: 0.01}
	run := func() bool {
		dev := map[string]int64{}
		for n := 1; n <= 5000; n++ {
			switch u := rng.Float64(); {
			case u < base.Failure:
				dev["install_failed"]++
			default:
				dev["install_succeeded"]++
				if rng.Float64() < base.Rollback {
					dev["rolled_back"]++
				}
				if rng.Float64() < base.Crash {
					dev["post_install_crash"]++
				}
			}
			if n%20 == 0 && Evaluate(cfg, base, dev, 0).Verdict == Regressed {
				return true
			}
		}
		return false
	}
	const trials = 400
	alarms := 0
	for range trials {
		if run() {
			alarms++
		}
	}
	// Binomial sd at 10% of 400 is 1.5%; per-metric alpha would allow 30%.
	if float64(alarms)/trials > 0.13 {
		t.Errorf("false alarms on any metric %d of %d with peeking; alpha is %g", alarms, trials, cfg.Alpha)
	}
	t.Logf("false alarms on any metric %d/%d", alarms, trials)
}

// TestAlwaysValid: releases exactly as good as the baseline, checked after
// every 20 reports up to 5,000 devices (peeking 250 times), are called
// regressed no more often than alpha; releases failing at 2.5× the
// baseline are caught almost always.
func TestAlwaysValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	cfg := DefaultGate
	cfg.Alpha = 0.05
	run := func(p float64) bool {
		var ok, failed int64
		for n := 1; n <= 5000; n++ {
			if rng.Float64() < p {
				failed++
			} else {
				ok++
			}
			if n%20 == 0 && Evaluate(cfg, Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}, devicesOf(ok, failed, ok+failed), 0).Tests[0].Verdict == Regressed {
				return true
			}
		}
		return false
	}
	const trials = 400
	alarms, caught := 0, 0
	for i := 0; i < trials; i++ {
		if run(0.02) {
			alarms++
		}
		if run(0.05) {
			caught++
		}
	}
	// alpha is 5%: allow sampling noise above it (binomial sd ≈ 1.1%).
	if float64(alarms)/trials > 0.08 {
		t.Errorf("false alarms %d of %d with peeking; alpha is %g", alarms, trials, cfg.Alpha)
	}
	if float64(caught)/trials < 0.95 {
		t.Errorf("caught %d of %d releases failing at 2.5x baseline", caught, trials)
	}
	t.Logf("false alarms %d/%d, power %d/%d", alarms, trials, caught, trials)
}

// TestGateMonteCarlo: at the default configuration (alpha 1%), good
// releases on a 2% baseline are called regressed at most 1% of the time
// though the gate looks after every 100 reports; a +1 percentage point
// regression (3%) and a doubling (4%) are caught, and how many reports
// that took is logged.
func TestGateMonteCarlo(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 11))
	base := Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	run := func(p float64, limit int) (bool, int) {
		var ok, failed int64
		for n := 1; n <= limit; n++ {
			if rng.Float64() < p {
				failed++
			} else {
				ok++
			}
			if n%100 == 0 && Evaluate(DefaultGate, base, devicesOf(ok, failed, ok+failed), 0).Tests[0].Verdict == Regressed {
				return true, n
			}
		}
		return false, limit
	}
	const trials = 300
	for _, tt := range []struct {
		name     string
		p        float64
		limit    int
		min, max float64 // share of trials called regressed
	}{
		{"good release (2%)", 0.02, 20000, 0, 0.02},
		{"+1pp (3%)", 0.03, 20000, 0.95, 1},
		{"doubling (4%)", 0.04, 5000, 0.95, 1},
	} {
		hits, sum := 0, 0
		for i := 0; i < trials; i++ {
			if hit, n := run(tt.p, tt.limit); hit {
				hits++
				sum += n
			}
		}
		share := float64(hits) / trials
		if share < tt.min || share > tt.max {
			t.Errorf("%s: regressed in %d of %d trials, want a share in [%g, %g]", tt.name, hits, trials, tt.min, tt.max)
		}
		if hits > 0 {
			t.Logf("%s: regressed in %d/%d trials, after %d reports on average", tt.name, hits, trials, sum/hits)
		} else {
			t.Logf("%s: regressed in 0/%d trials (200 looks each)", tt.name, trials)
		}
	}
}

// TestRareMetricsAreWatched: a wave too small to prove a 0.5% crash rate
// healthy does not wait on it (it is watched), a wave large enough must
// prove it, and a watched metric still regresses.
func TestRareMetricsAreWatched(t *testing.T) {
	cfg := GateConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.5, MinCompleteness: 0.5}
	base := Baseline{Failure: 0.02, Rollback: 0.005, Crash: 0.005}
	// 10,000 devices at exactly the baseline rates; crashes a little high
	// by chance (60 rather than 49).
	dev := map[string]int64{"install_succeeded": 9800, "install_failed": 200, "rolled_back": 49, "post_install_crash": 60, "offered": 10000}
	if r := Evaluate(cfg, base, dev, 0); r.Verdict != Inconclusive {
		t.Fatalf("without a planned size: %s (%s)", r.Verdict, r.Summary)
	}
	r := EvaluateWave(cfg, base, dev, 0, 10000, nil)
	if r.Verdict != Healthy || !r.Tests[2].Watched || r.Tests[0].Watched {
		t.Fatalf("10,000-device wave: %s (%s) %+v", r.Verdict, r.Summary, r.Tests)
	}
	if r := EvaluateWave(cfg, base, dev, 0, 400000, nil); r.Verdict != Inconclusive || r.Tests[2].Watched {
		t.Fatalf("400,000-device wave: %s (%s)", r.Verdict, r.Summary)
	}
	dev["post_install_crash"] = 150
	if r := EvaluateWave(cfg, base, dev, 0, 10000, nil); r.Verdict != Regressed {
		t.Fatalf("crash rate 1.5%%: %s (%s)", r.Verdict, r.Summary)
	}
}

// TestHealthyOverAllWaves: a wave whose own evidence is short is healthy
// when every wave so far shows the metric below the margin.
func TestHealthyOverAllWaves(t *testing.T) {
	cfg := GateConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.5, MinCompleteness: 0.5}
	base := Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	wave := devicesOf(1960, 40, 2000)
	if r := EvaluateWave(cfg, base, wave, 1, 0, nil); r.Tests[0].Verdict != Inconclusive {
		t.Fatalf("wave alone: %+v", r.Tests[0])
	}
	r := EvaluateWave(cfg, base, wave, 1, 0, devicesOf(19600, 400, 20000))
	if r.Tests[0].Verdict != Healthy || !r.Tests[0].HealthyOverAll {
		t.Fatalf("with all waves: %+v", r.Tests[0])
	}
	// All waves regressed: no help.
	if r := EvaluateWave(cfg, base, wave, 1, 0, devicesOf(19000, 1000, 20000)); r.Tests[0].Verdict == Healthy {
		t.Fatalf("regressed waves proved health: %+v", r.Tests[0])
	}
}

// TestFailureTolerance: a baseline scaled down for low-risk devices keeps
// the fleet's absolute tolerance, so a 0.8% rate against a 0.7% baseline
// with a 1 pp tolerance is healthy where the relative margin is not.
func TestFailureTolerance(t *testing.T) {
	cfg := GateConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.5, MinCompleteness: 0.5}
	base := Baseline{Failure: 0.007, Rollback: 0.5, Crash: 0.5}
	dev := devicesOf(4960, 40, 5000)
	if r := Evaluate(cfg, base, dev, 0); r.Tests[0].Verdict != Inconclusive {
		t.Fatalf("relative margin: %+v", r.Tests[0])
	}
	base.FailureTolerance = 0.01
	if r := Evaluate(cfg, base, dev, 0); r.Tests[0].Verdict != Healthy {
		t.Fatalf("absolute tolerance: %+v", r.Tests[0])
	}
}

func TestAdjustForAmbient(t *testing.T) {
	base := Baseline{Failure: 0.02, Source: "declared"}
	before := NewRate(2000, 100000)
	// An incident: other installs fail at 4% now.
	b, a := AdjustForAmbient(base, NewRate(800, 20000), before)
	if a.Factor < 1.6 || a.Factor > 2 || b.Failure != 0.02*a.Factor || b.Source == base.Source {
		t.Fatalf("incident: factor %.2f, baseline %+v", a.Factor, b)
	}
	// A quiet spell never makes the baseline stricter.
	if b, a := AdjustForAmbient(base, NewRate(100, 20000), before); a.Factor != 1 || b != base {
		t.Fatalf("quiet: factor %.2f, baseline %+v", a.Factor, b)
	}
	// A few reports cannot move it much (shrunk toward the week before).
	if _, a := AdjustForAmbient(base, NewRate(10, 100), before); a.Factor > 1.5 {
		t.Fatalf("100 reports moved the baseline by %.2f", a.Factor)
	}
	// Without a reference week, nothing changes.
	if b, a := AdjustForAmbient(base, NewRate(800, 20000), NewRate(10, 100)); a.Factor != 1 || b != base {
		t.Fatalf("no reference: factor %.2f", a.Factor)
	}
}

// incidentHours is a fleet's other installs, perHour an hour for hours
// [0, 72), failing at 2% but at 4% in hours [from, to).
func incidentHours(perHour int64, from, to int64) Hourly {
	h := Hourly{}
	for hour := int64(0); hour < 72; hour++ {
		failed := perHour / 50
		if hour >= from && hour < to {
			failed *= 2
		}
		h[hour] = Installs{Failed: failed, Of: perHour}
	}
	return h
}

func TestTimeMatched(t *testing.T) {
	others := incidentHours(1000, 30, 50)
	during := Hourly{}
	for hour := int64(34); hour < 46; hour++ {
		during.Count(hour, "install_succeeded", 90)
		during.Count(hour, "install_failed", 10)
		during.Count(hour, "rolled_back", 5) // not an install outcome
	}
	if got := during[34]; got != (Installs{Failed: 10, Of: 100}) {
		t.Fatalf("Count: %+v", got)
	}
	// Installs made during the incident expect its rate, which the
	// whole rollout's other installs dilute.
	r := TimeMatched(during, others)
	if math.Abs(r.Value-0.04) > 1e-9 || others.Rate(0, 72).Value > 0.03 {
		t.Fatalf("during the incident: %+v (whole window %.4f)", r, others.Rate(0, 72).Value)
	}
	// 12 hours of installs matched with 18 hours of 1,000 other installs,
	// weighted unevenly at the edges: the effective sample is a little
	// well under 18,000 and the interval is as wide as that.
	if r.Of < 12000 || r.Of > 18000 || r.Low > 0.04 || r.High < 0.04 || r.High-r.Low > 0.01 {
		t.Fatalf("effective sample: %+v", r)
	}
	// Installs before it expect the rate before it.
	early := Hourly{5: {Failed: 2, Of: 100}, 6: {Of: 100}}
	if r := TimeMatched(early, others); math.Abs(r.Value-0.02) > 1e-9 {
		t.Fatalf("before the incident: %+v", r)
	}
	// Half before, half during: halfway.
	mixed := Hourly{5: {Of: 100}, 40: {Of: 100}}
	if r := TimeMatched(mixed, others); math.Abs(r.Value-0.03) > 1e-9 {
		t.Fatalf("half and half: %+v", r)
	}
	// Hours with no other installs near them are left out, and with none
	// at all there is no reference.
	if r := TimeMatched(Hourly{40: {Of: 100}, 500: {Failed: 100, Of: 100}}, others); math.Abs(r.Value-0.04) > 1e-9 {
		t.Fatalf("an unmatched hour counted: %+v", r)
	}
	if r := TimeMatched(Hourly{500: {Of: 100}}, others); r.Of != 0 {
		t.Fatalf("no reference: %+v", r)
	}
	// Sparse other installs (a cohort's) give a wide interval.
	sparse := incidentHours(50, 30, 50)
	if r := TimeMatched(during, sparse); r.Of > 1000 || r.High-r.Low < 0.02 {
		t.Fatalf("sparse reference: %+v", r)
	}
}

// TestCellTimeMatched: a cell's reference widens until it rests on enough
// installs, and no further; it still shows an incident it spans.
func TestCellTimeMatched(t *testing.T) {
	during := Hourly{}
	for hour := int64(34); hour < 46; hour++ {
		during.Count(hour, "install_succeeded", 9)
		during.Count(hour, "install_failed", 1)
	}
	// A dense cell: the narrow match is enough, and it is TimeMatched's.
	dense := incidentHours(1000, 30, 50)
	if r, want := CellTimeMatched(during, dense), TimeMatched(during, dense); r != want {
		t.Fatalf("dense: %+v, want %+v", r, want)
	}
	// A sparse cell (3 installs an hour): ±3 hours give about 20
	// effective installs per match, too few; the widened match gives at
	// least minCellAmbient and still sees the incident (4% against 2%
	// outside it).
	sparse := Hourly{}
	for hour := int64(0); hour < 96; hour++ {
		in := Installs{Of: 3}
		if hour >= 20 && hour < 60 && hour%8 < 1 {
			in.Failed = 1 // 1 in 24 during the incident
		} else if hour%16 < 1 {
			in.Failed = 1 // 1 in 48 outside it
		}
		sparse[hour] = in
	}
	if narrow := TimeMatched(during, sparse); narrow.Of >= minCellAmbient {
		t.Fatalf("the narrow match is not sparse: %+v", narrow)
	}
	r := CellTimeMatched(during, sparse)
	if r.Of < minCellAmbient || r.Value < 0.03 {
		t.Fatalf("widened: %+v", r)
	}
	// Too few other installs at any span: the widest match, still short.
	if r := CellTimeMatched(during, Hourly{40: {Failed: 1, Of: 10}}); r.Of >= minCellAmbient || r.Of == 0 {
		t.Fatalf("too few: %+v", r)
	}
}

// TestAdjustForCellAmbient: a cell whose other installs rose expects its
// own rate raised by the rise (an old firmware failing 6% normally, 12%
// during an incident, expects about that); a cell whose other installs did
// not rise, or rest on too few installs, keeps its baseline.
func TestAdjustForCellAmbient(t *testing.T) {
	base := Baseline{Failure: 0.02}
	before := NewRate(60, 1000) // the cell's normal: 6%
	b, a := AdjustForCellAmbient(base, NewRate(24, 200), before)
	if a.Factor < 2 || b.Failure < 0.12 || b.Failure > 0.5 {
		t.Fatalf("during an incident: factor %.2f, baseline %.4f", a.Factor, b.Failure)
	}
	if b, a := AdjustForCellAmbient(base, NewRate(6, 1000), before); a.Factor != 1 || b != base {
		t.Fatalf("quiet: factor %.2f, baseline %.4f", a.Factor, b.Failure)
	}
	if b, a := AdjustForCellAmbient(base, NewRate(12, 50), before); a.Factor != 1 || b != base {
		t.Fatalf("too few: factor %.2f, baseline %.4f", a.Factor, b.Failure)
	}
}
