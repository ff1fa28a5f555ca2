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
