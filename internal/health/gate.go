package health

import (
	"fmt"
	"math"
	"strings"
)

// Verdict is a gate's decision about a wave.
type Verdict string

const (
	Healthy      Verdict = "healthy"
	Inconclusive Verdict = "inconclusive"
	Regressed    Verdict = "regressed"
)

// GateConfig is how strict a gate is.
type GateConfig struct {
	// Alpha bounds the chance of calling a release as good as its baseline
	// regressed, on any of its metrics, however often the gate looks
	// (always-valid; the metrics share it, alphaShares).
	Alpha float64 `json:"alpha"`
	// Beta bounds the chance of calling a release healthy when it is worse
	// than the baseline by Margin.
	Beta float64 `json:"beta"`
	// Margin is the relative worsening tolerated when calling a wave
	// healthy: 0.25 means "failure rate below 1.25 × baseline".
	Margin float64 `json:"margin"`
	// MinCompleteness is the share of offered devices that must have
	// reported an outcome before a wave can be called healthy (telemetry
	// arrives late; devices that never report count against it).
	MinCompleteness float64 `json:"min_completeness"`
}

// DefaultGate is the gate used when a plan enables gating without options.
var DefaultGate = GateConfig{Alpha: 0.01, Beta: 0.05, Margin: 0.25, MinCompleteness: 0.5}

// Baseline is the rates a release is compared with.
type Baseline struct {
	Failure  float64 `json:"failure"`
	Rollback float64 `json:"rollback"`
	Crash    float64 `json:"crash"`
	// FailureTolerance, when set, is the absolute rise of the failure rate
	// tolerated when calling a wave healthy (instead of Margin × Failure):
	// a baseline scaled down for the low predicted risk of the devices
	// exposed first keeps the fleet's tolerance in failures per device.
	FailureTolerance float64 `json:"failure_tolerance,omitempty"`
	// Source says where they come from ("declared", "previous release …").
	Source string `json:"source"`
}

// Test is one metric's sequential test.
type Test struct {
	Metric   string  `json:"metric"`
	Observed Rate    `json:"observed"`
	Baseline float64 `json:"baseline"`
	// LogLRWorse is log of the mixture likelihood ratio for "worse than
	// baseline"; it regresses at log(1/(share × Alpha)), the metric's
	// share of Alpha (alphaShares).
	LogLRWorse float64 `json:"log_lr_worse"`
	// LogLRBetter is log of the ratio for "below baseline × (1+Margin)";
	// healthy at log(1/Beta).
	LogLRBetter float64 `json:"log_lr_better"`
	Verdict     Verdict `json:"verdict"`
	// Watched: the wave is too small to prove this (rare) metric healthy,
	// so it does not hold the wave back; its regression test still runs
	// on every look and over every wave.
	Watched bool `json:"watched,omitempty"`
	// HealthyOverAll: healthy on the counts of every wave so far (this
	// wave alone had too little evidence).
	HealthyOverAll bool `json:"healthy_over_all_waves,omitempty"`
}

// alphaShares divides a gate's Alpha among its metrics, in metricsOf's
// order: a false alarm on any of them halts a release, so together they
// may spend Alpha and no more. Install failures, the rate every device
// reports and the one regressions show in first, keep most of it, so
// their regressions are caught nearly as soon as with the whole of it;
// rollbacks and crashes, rare and noisy, share the rest.
var alphaShares = []float64{0.8, 0.1, 0.1}

// metric is one gate metric's events out of devices.
type metric struct {
	name string
	k, n int64
	p0   float64
}

// metricsOf returns failures (of devices that finished installing),
// rollbacks and crashes (of those that succeeded) with their baselines.
func metricsOf(base Baseline, devices map[string]int64) []metric {
	ok := devices["install_succeeded"]
	failed := devices["install_failed"] + devices["download_failed"]
	return []metric{
		{"failure", failed, ok + failed, base.Failure},
		{"rollback", devices["rolled_back"], ok, base.Rollback},
		{"crash", devices["post_install_crash"], ok, base.Crash},
	}
}

// GateResult is a gate's verdict with the numbers behind it.
type GateResult struct {
	Verdict      Verdict    `json:"verdict"`
	Wave         int        `json:"wave"`
	Offered      int64      `json:"offered"`
	Reported     int64      `json:"reported"`
	Completeness float64    `json:"completeness"`
	Tests        []Test     `json:"tests"`
	Config       GateConfig `json:"config"`
	Baseline     Baseline   `json:"baseline"`
	Summary      string     `json:"summary"`
	// Cohort, when set, is the cohort the regression was localized to, and
	// HoldID the automatic hold on it.
	Cohort *Localization `json:"cohort,omitempty"`
	HoldID string        `json:"hold_id,omitempty"`
}

// worseRatios are the alternatives the "worse" mixture spreads over, as
// multiples of the baseline rate, equally weighted.
var worseRatios = []float64{1.25, 1.5, 2, 3, 5}

// betterRatios are the alternatives of the "healthy" mixture, as
// multiples of the baseline rate.
var betterRatios = []float64{0.5, 0.75, 1}

// logMixture is log Σ w_j (p_j/p0)^k ((1-p_j)/(1-p0))^(n-k) over p_j =
// r_j·base, computed stably. Under p ≤ p0 (for ratios above 1) it is a
// nonnegative supermartingale in n, so by Ville's inequality it exceeds
// log(1/α) with probability at most α, however often it is examined.
func logMixture(k, n int64, p0 float64, ratios []float64, base float64) float64 {
	terms := make([]float64, 0, len(ratios))
	for _, r := range ratios {
		p := math.Min(r*base, 0.999999)
		if p <= 0 {
			continue
		}
		terms = append(terms, float64(k)*math.Log(p/p0)+float64(n-k)*math.Log((1-p)/(1-p0))-math.Log(float64(len(ratios))))
	}
	return logSumExp(terms)
}

// logSumExp is log Σ exp(terms), computed stably.
func logSumExp(terms []float64) float64 {
	m := math.Inf(-1)
	for _, x := range terms {
		m = math.Max(m, x)
	}
	if math.IsInf(m, -1) {
		return m
	}
	sum := 0.0
	for _, x := range terms {
		sum += math.Exp(x - m)
	}
	return m + math.Log(sum)
}

// provable reports whether n devices at exactly the baseline rate p0 would
// prove "below hi" (log(1/Beta) of evidence) with probability at least
// 1-Beta: the expected log likelihood ratio of the mixture's own-baseline
// component, less the mixture's weight, must clear the bar by z(1-Beta)
// standard deviations (normal approximation to the event count).
func provable(cfg GateConfig, n, p0, hi float64) bool {
	a, b := math.Log(p0/hi), math.Log((1-p0)/(1-hi))
	mean := n*(p0*a+(1-p0)*b) - math.Log(float64(len(betterRatios)))
	sd := math.Abs(a-b) * math.Sqrt(n*p0*(1-p0))
	z := math.Sqrt2 * math.Erfinv(1-2*cfg.Beta)
	return mean-z*sd >= math.Log(1/cfg.Beta)
}

// Evaluate runs the gate on a wave's counts: per metric, "regressed" once
// the evidence that the rate exceeds the baseline passes log(1/(share ×
// Alpha)) (the metrics share Alpha, alphaShares);
// "healthy" once the evidence that it is below baseline × (1+Margin)
// passes log(1/Beta) and enough of the exposed devices have reported.
// The wave is regressed if any metric is, healthy if all are.
func Evaluate(cfg GateConfig, base Baseline, devices map[string]int64, wave int) GateResult {
	return EvaluateWave(cfg, base, devices, wave, 0, nil)
}

// reportsOf is the share of a wave's devices metric i is measured on:
// every device that finishes installing for failures, the successes for
// rollbacks and crashes.
func reportsOf(i int, base Baseline) float64 {
	if i == 0 {
		return 1
	}
	return 1 - base.Failure
}

// EvaluateWave is Evaluate for a wave of planned devices (0: unknown)
// within a rollout whose counts over every wave so far are all (nil: only
// this wave). A metric is healthy when this wave or all waves together
// show it below the margin: once a wave has reported all it will, the
// waves before it still add evidence. A rare metric (rollbacks, crashes)
// that even the whole wave could not prove healthy is watched rather than
// required: it cannot hold the wave back forever, and its regression test
// still pauses the rollout. A wave too small to prove even install failures
// healthy is a canary: it advances once enough of it has reported without
// a regression, having caught only gross ones.
func EvaluateWave(cfg GateConfig, base Baseline, devices map[string]int64, wave int, planned int64, all map[string]int64) GateResult {
	ok := devices["install_succeeded"]
	failed := devices["install_failed"] + devices["download_failed"]
	offered := max(devices["offered"], ok+failed)
	res := GateResult{Wave: wave, Offered: offered, Reported: ok + failed, Config: cfg, Baseline: base, Verdict: Healthy}
	if offered > 0 {
		res.Completeness = float64(ok+failed) / float64(offered)
	}
	metrics := metricsOf(base, devices)
	var overAll []metric
	if all != nil {
		overAll = metricsOf(base, all)
	}
	var regressed, unsure, watched []string
	healthy := func(k, n int64, p0, hi, bar float64) bool {
		return logMixture(k, n, hi, betterRatios, p0) >= math.Log(1/cfg.Beta) && logMixture(k, n, p0, worseRatios, p0) < bar
	}
	for i, m := range metrics {
		bar := math.Log(1 / (alphaShares[i] * cfg.Alpha))
		p0 := math.Max(m.p0, 1e-4) // a zero baseline would make any event infinitely surprising
		t := Test{Metric: m.name, Observed: NewRate(m.k, m.n), Baseline: m.p0,
			LogLRWorse: logMixture(m.k, m.n, p0, worseRatios, p0)}
		hi := math.Min(p0*(1+cfg.Margin), 0.999)
		if i == 0 && base.FailureTolerance > 0 {
			hi = math.Min(p0+base.FailureTolerance, 0.999)
		}
		t.LogLRBetter = logMixture(m.k, m.n, hi, betterRatios, p0)
		switch {
		case t.LogLRWorse >= bar:
			t.Verdict = Regressed
			regressed = append(regressed, fmt.Sprintf("%s rate %.2f%% (%d of %d) vs baseline %.2f%%", m.name, 100*t.Observed.Value, m.k, m.n, 100*m.p0))
		case t.LogLRBetter >= math.Log(1/cfg.Beta):
			t.Verdict = Healthy
		case overAll != nil && healthy(overAll[i].k, overAll[i].n, p0, hi, bar):
			t.Verdict, t.HealthyOverAll = Healthy, true
		case planned > 0 && !provable(cfg, float64(planned)*reportsOf(i, base), p0, hi):
			t.Verdict, t.Watched = Inconclusive, true
			watched = append(watched, m.name)
		default:
			t.Verdict = Inconclusive
			unsure = append(unsure, m.name)
		}
		res.Tests = append(res.Tests, t)
	}
	switch {
	case len(regressed) > 0:
		res.Verdict = Regressed
		res.Summary = fmt.Sprintf("wave %d regressed: %s (always-valid tests sharing alpha %g)", wave+1, strings.Join(regressed, "; "), cfg.Alpha)
	case len(unsure) > 0:
		res.Verdict = Inconclusive
		res.Summary = fmt.Sprintf("wave %d inconclusive: not enough evidence yet on %s", wave+1, strings.Join(unsure, ", "))
	case res.Completeness < cfg.MinCompleteness:
		res.Verdict = Inconclusive
		res.Summary = fmt.Sprintf("wave %d inconclusive: %.0f%% of %d offered devices have reported (need %.0f%%)",
			wave+1, 100*res.Completeness, offered, 100*cfg.MinCompleteness)
	case len(watched) == len(metrics):
		res.Summary = fmt.Sprintf("wave %d healthy as a canary: %.0f%% of its devices reported and nothing regressed (a wave of %d devices cannot prove health; later waves must)",
			wave+1, 100*res.Completeness, planned)
	case len(watched) > 0:
		res.Summary = fmt.Sprintf("wave %d healthy: failures below %.0f%% of their baseline with confidence %g; %s watched (a wave of %d devices cannot prove such rare rates, and a regression still pauses the rollout)",
			wave+1, 100*(1+cfg.Margin), 1-cfg.Beta, strings.Join(watched, ", "), planned)
	default:
		res.Summary = fmt.Sprintf("wave %d healthy: every rate is below %.0f%% of its baseline with confidence %g", wave+1, 100*(1+cfg.Margin), 1-cfg.Beta)
	}
	return res
}
