package health

import (
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
