package health

import (
	"math"
	"sort"
	"strings"
)

// CellDevices is a cohort cell's device counts by outcome.
type CellDevices struct {
	Cell    string
	Devices map[string]int64
}

// Localization names the cohort cell that explains a regression.
type Localization struct {
	Cell string `json:"cell"`
	// Test is the cell's most significant test.
	Test Test `json:"test"`
	// Threshold is the log likelihood ratio a cell had to pass: log(m/alpha)
	// for m tests (Bonferroni across cells and metrics, which keeps the
	// always-valid guarantee for the whole family).
	Threshold float64 `json:"threshold"`
	Tested    int     `json:"tested"`
	// Rest is the gate's verdict on every device outside the cell.
	Rest GateResult `json:"rest"`
}

// MaxCohortShare is the largest share of the reporting devices a cohort
// cell may hold to explain a regression: holding more is not containing a
// cohort but halting most of the rollout under another name, and a broad
// regression (a global one shows in every big cell) must pause it.
const MaxCohortShare = 0.2

// Localize looks for the most general cohort cell that explains a
// regression: a cell whose own rates regress at the family-wise level and
// without which the rest of the devices do not. Single attributes come
// before pairs, stronger evidence first. Cells holding capped ("other")
// values cannot be expressed as a rule and are skipped. ok is false when
// no cell explains it (the regression is not localized).
func Localize(cfg GateConfig, base Baseline, overall map[string]int64, cells []CellDevices, wave int) (Localization, bool) {
	return LocalizeWith(cfg, base, overall, cells, wave, nil, false)
}

// LocalizeWith is Localize with the previous release's counts per cell
// (prior; nil: none), which lets a scan run before the whole rollout
// regresses: cells differ by nature (old firmware fails more), and only a
// cell worse than it was in the previous release is the release's doing.
// A metric whose cell had at least minPriorReports in the previous release
// is tested against it (PriorTest); the others against base, or, with
// onlyPrior (a scan while the rollout as a whole is fine), not at all: a
// small cell's own nature is not a regression.
func LocalizeWith(cfg GateConfig, base Baseline, overall map[string]int64, cells []CellDevices, wave int, prior map[string]map[string]int64, onlyPrior bool) (Localization, bool) {
	type cand struct {
		cell    CellDevices
		test    Test
		general int // number of attributes: fewer is more general
	}
	var tested []cand
	all := Evaluate(cfg, base, overall, wave).Reported
	for _, c := range cells {
		if c.Cell == "" || strings.Contains(c.Cell, "=other") {
			continue
		}
		r := Evaluate(cfg, base, c.Devices, wave)
		if r.Reported == 0 || float64(r.Reported) > MaxCohortShare*float64(all) {
			continue
		}
		if prior != nil {
			now, before := metricsOf(base, c.Devices), metricsOf(base, prior[c.Cell])
			if before[0].n < minPriorReports && onlyPrior {
				continue // no baseline of its own: nothing to scan it against
			}
			for i := range r.Tests {
				if before[i].n >= minPriorReports {
					r.Tests[i] = PriorTest(now[i].name, now[i].k, now[i].n, before[i].k, before[i].n)
				}
			}
		}
		best := r.Tests[0]
		for _, t := range r.Tests[1:] {
			if t.LogLRWorse > best.LogLRWorse {
				best = t
			}
		}
		tested = append(tested, cand{cell: c, test: best, general: strings.Count(c.Cell, "|") + 1})
	}
	threshold := math.Log(float64(3*max(len(tested), 1)) / cfg.Alpha)
	var flagged []cand
	for _, c := range tested {
		if c.test.LogLRWorse >= threshold {
			flagged = append(flagged, c)
		}
	}
	sort.SliceStable(flagged, func(i, j int) bool {
		if flagged[i].general != flagged[j].general {
			return flagged[i].general < flagged[j].general
		}
		return flagged[i].test.LogLRWorse > flagged[j].test.LogLRWorse
	})
	for _, c := range flagged {
		rest := map[string]int64{}
		for k, v := range overall {
			rest[k] = v - c.cell.Devices[k]
		}
		if r := Evaluate(cfg, base, rest, wave); r.Verdict != Regressed {
			return Localization{Cell: c.cell.Cell, Test: c.test, Threshold: threshold, Tested: 3 * len(tested), Rest: r}, true
		}
	}
	return Localization{Threshold: threshold, Tested: 3 * len(tested)}, false
}

// minPriorReports is how many devices of a cell must have reported a
// metric in the previous release for the cell to be tested against it.
const minPriorReports = 100

// PriorTest is a metric's always-valid test of "worse than in the previous
// release" for one cohort cell: k events of n now against k0 of n0 then.
// Conditional on the k+k0 events, the share that happened now is binomial
// with p = n/(n+n0) when the rate did not change (the Poisson rate-ratio
// test), and the mixture over rate ratios 1.25-5 is, as in Evaluate, a
// nonnegative supermartingale under it. Its power is bounded by the
// previous release's evidence, as it should be: a cell measured on a few
// devices then cannot be called worse now with more confidence than that.
func PriorTest(metric string, k, n, k0, n0 int64) Test {
	t := Test{Metric: metric, Observed: NewRate(k, n), Baseline: NewRate(k0, n0).Value, LogLRBetter: math.Inf(-1), Verdict: Inconclusive}
	if n == 0 || n0 == 0 || k+k0 == 0 {
		t.LogLRWorse = math.Inf(-1)
		return t
	}
	share := float64(n) / float64(n+n0)
	terms := make([]float64, len(worseRatios))
	for i, r := range worseRatios {
		p := r * float64(n) / (r*float64(n) + float64(n0))
		terms[i] = float64(k)*math.Log(p/share) + float64(k0)*math.Log((1-p)/(1-share)) - math.Log(float64(len(worseRatios)))
	}
	t.LogLRWorse = logSumExp(terms)
	return t
}
