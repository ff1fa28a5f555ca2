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
	return LocalizeWith(cfg, base, overall, cells, wave, nil)
}

// LocalizeWith is Localize with a baseline per cell (nil: base for all),
// which lets a scan run before the whole rollout regresses: cells differ
// by nature (old firmware fails more), and only a cell worse than its own
// baseline is the release's doing.
func LocalizeWith(cfg GateConfig, base Baseline, overall map[string]int64, cells []CellDevices, wave int, cellBase func(cell string) Baseline) (Localization, bool) {
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
		b := base
		if cellBase != nil {
			b = cellBase(c.Cell)
		}
		r := Evaluate(cfg, b, c.Devices, wave)
		if r.Reported == 0 || float64(r.Reported) > MaxCohortShare*float64(all) {
			continue
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

// minPriorReports is how many devices of a cell must have finished the
// previous release for its rate to be the cell's baseline.
const minPriorReports = 100

// CellBaselines returns each cohort cell's baseline from a previous
// release's counts per cell (prior): the upper end of the 95% interval of
// the cell's failure rate there, never below base's (a generous baseline
// keeps a scan at every look from holding cells that merely differ a
// little from the last release). Cells with too few prior reports, and
// rollbacks and crashes, keep base's rates.
func CellBaselines(base Baseline, prior []CellDevices) func(cell string) Baseline {
	rates := make(map[string]float64, len(prior))
	for _, c := range prior {
		failed := c.Devices["install_failed"] + c.Devices["download_failed"]
		if n := failed + c.Devices["install_succeeded"]; n >= minPriorReports {
			rates[c.Cell] = NewRate(failed, n).High
		}
	}
	return func(cell string) Baseline {
		b := base
		if r, ok := rates[cell]; ok {
			b.Failure = max(b.Failure, r)
			b.Source += ", this cohort's rate in the previous release"
		}
		return b
	}
}
