package controller

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

// Evidence is what the health gate judges a deployment on: devices by
// outcome over all waves so far and in the current wave, and (computed
// only when a regression needs localizing or the cohorts are scanned) the
// same per cohort cell.
type Evidence struct {
	Wave int
	// Planned is how many devices the current wave is expected to reach
	// (0: unknown); rare metrics a wave this size cannot prove healthy are
	// watched rather than required (health.EvaluateWave).
	Planned int64
	All     map[string]int64
	Current map[string]int64
	// PriorCells, when set, are the previous release's device counts per
	// cohort cell: each cell's own baseline for a cohort scan at every look.
	PriorCells []health.CellDevices
	// AmbientCell, when set, returns the failure rate of the fleet's other
	// installs on a cohort cell's devices during the rollout (matched hour
	// by hour with the release's installs there, health.TimeMatched) and
	// in the week before: a regression confined to a cell whose other
	// installs fail as much more is an ambient incident, not the release.
	AmbientCell func(cell string) (now, before health.Rate, err error)
	// RiskAll and RiskCurrent: in a risk-ordered rollout, the mean
	// predicted failure risk of the devices that reported (over all waves,
	// in the current wave) relative to the population the baseline was
	// measured on; the failure baseline is scaled by it, so exposing the
	// least risky devices first does not hide a regression (0: 1).
	RiskAll, RiskCurrent float64
	// Cells returns every cohort cell's counts over all waves, and each
	// cell's counts in the current wave.
	Cells func() (all []health.CellDevices, current map[string]map[string]int64, err error)
}

// HoldState is what became of the automatic hold on a cohort.
type HoldState int

const (
	// NoHold: none exists (and the caller did not create one).
	NoHold HoldState = iota
	// HoldIsActive: the cohort is held; the rest of the rollout goes on.
	HoldIsActive
	// HoldIsProposed: a person has yet to activate the hold.
	HoldIsProposed
	// HoldWasReleased: a person released the hold on purpose.
	HoldWasReleased
)

// Holds is how Judge learns, and the controller decides, what happens to
// the automatic hold on a cohort: it returns the hold's state (creating it,
// when the caller acts on the verdict) and its id.
type Holds func(rule, evidence string) (HoldState, string, error)

// GateConfig returns the health gate's configuration for a plan's gate.
func GateConfig(g *rollout.Gate) health.GateConfig {
	cfg := health.DefaultGate
	if g == nil {
		return cfg
	}
	if g.Alpha > 0 {
		cfg.Alpha = g.Alpha
	}
	if g.Beta > 0 {
		cfg.Beta = g.Beta
	}
	if g.Margin > 0 {
		cfg.Margin = g.Margin
	}
	if g.MinCompleteness > 0 {
		cfg.MinCompleteness = g.MinCompleteness
	}
	return cfg
}

// Judge is the health gate's decision, free of storage: a regression
// anywhere in the rollout so far pauses it (all waves give the most
// evidence), unless the plan holds cohorts automatically and the
// regression is localized to one cohort, whose hold (per holds) lets the
// rest go on, judged without it; otherwise the current wave must be
// healthy to advance. With the previous release's counts per cohort
// (ev.PriorCells), every look also scans the cohorts against their own
// baselines, so a cohort too small to move the whole rollout is held
// early. The server's controller and fleetbench both call it.
func Judge(g *rollout.Gate, base health.Baseline, ev Evidence, holds Holds) (health.GateResult, error) {
	cfg := GateConfig(g)
	autoHold := ""
	if g != nil {
		autoHold = g.AutoHold
	}
	baseAll, baseCurrent := riskAdjusted(cfg, base, ev.RiskAll), riskAdjusted(cfg, base, ev.RiskCurrent)
	var prior map[string]map[string]int64
	if ev.PriorCells != nil {
		prior = make(map[string]map[string]int64, len(ev.PriorCells))
		for _, c := range ev.PriorCells {
			prior[c.Cell] = c.Devices
		}
	}
	r := health.Evaluate(cfg, baseAll, ev.All, ev.Wave)
	regressed := r.Verdict == health.Regressed
	if !regressed && (autoHold == "" || ev.Cells == nil || prior == nil) {
		return currentWave(cfg, baseCurrent, ev.Current, ev.Wave, ev.Planned, ev.All), nil
	}
	if regressed {
		r.Summary = strings.Replace(r.Summary, fmt.Sprintf("wave %d regressed", r.Wave+1), "rollout regressed (all waves so far)", 1)
		if autoHold == "" || ev.Cells == nil {
			return r, nil
		}
	}
	cells, current, err := ev.Cells()
	if err != nil {
		return r, err
	}
	loc, ok := health.LocalizeWith(cfg, baseAll, ev.All, cells, ev.Wave, prior, !regressed)
	switch {
	case !ok && regressed:
		r.Summary += "; not localized to a cohort, so the rollout pauses"
		return r, nil
	case !ok:
		return currentWave(cfg, baseCurrent, ev.Current, ev.Wave, ev.Planned, ev.All), nil
	}
	var cellAll map[string]int64
	for _, c := range cells {
		if c.Cell == loc.Cell {
			cellAll = c.Devices
		}
	}
	if ev.AmbientCell != nil {
		now, before, err := ev.AmbientCell(loc.Cell)
		if err != nil {
			return r, err
		}
		cb := baseAll
		if loc.Test.Metric == "failure" {
			cb.Failure = max(cb.Failure, loc.Test.Baseline) // the cell's own previous rate, when it was tested on it
		}
		if cb, amb := health.AdjustForCellAmbient(cb, now, before); amb.Factor > 1 && health.Evaluate(cfg, cb, cellAll, ev.Wave).Verdict != health.Regressed {
			out := currentWave(cfg, baseCurrent, ev.Current, ev.Wave, ev.Planned, nil)
			if out.Verdict == health.Healthy {
				out.Verdict = health.Inconclusive
			}
			out.Summary = fmt.Sprintf("%s regressed, but the fleet's other installs on it fail up to %.2f times as often as the week before in the hours of this release's installs there (%.2f%% vs %.2f%%): an ambient incident, not this release; waiting it out",
				loc.Cell, amb.Factor, 100*amb.Now.Value, 100*amb.Before.Value)
			return out, nil
		}
	}
	rule := CellRule(loc.Cell)
	evidence := fmt.Sprintf("automatic: %s %s rate %.2f%% (%d of %d) vs baseline %.2f%% (log LR %.1f over the family-wise %.1f for %d tests); rest of the rollout: %s",
		loc.Cell, loc.Test.Metric, 100*loc.Test.Observed.Value, loc.Test.Observed.Events, loc.Test.Observed.Of, 100*loc.Test.Baseline,
		loc.Test.LogLRWorse, loc.Threshold, loc.Tested, loc.Rest.Verdict)
	state, holdID, err := holds(rule, evidence)
	if err != nil {
		return r, err
	}
	switch {
	case state == HoldWasReleased && !regressed:
		// A person released it on purpose and the rollout as a whole is fine.
		return currentWave(cfg, baseCurrent, ev.Current, ev.Wave, ev.Planned, ev.All), nil
	case state == HoldWasReleased:
		r.Cohort, r.HoldID = &loc, holdID
		r.Summary += fmt.Sprintf("; cohort %s was held automatically (%s) and a person released that hold, so the rollout pauses", loc.Cell, holdID)
		return r, nil
	case state == HoldIsProposed || autoHold == "proposed":
		if !regressed {
			r.Verdict = health.Inconclusive
			r.Summary = fmt.Sprintf("cohort %s regressed against its own baseline", loc.Cell)
		}
		r.Cohort, r.HoldID = &loc, holdID
		r.Summary += fmt.Sprintf("; localized to %s: proposed hold %s awaits activation", loc.Cell, orPending(holdID))
		return r, nil
	}
	// Held (or about to be): judge the current wave without the cohort.
	rest, restAll := map[string]int64{}, map[string]int64{}
	for k, v := range ev.Current {
		rest[k] = v - current[loc.Cell][k]
	}
	for k, v := range ev.All {
		restAll[k] = v - cellAll[k]
	}
	out := currentWave(cfg, baseCurrent, rest, ev.Wave, ev.Planned, restAll)
	out.Cohort, out.HoldID = &loc, holdID
	out.Summary = fmt.Sprintf("cohort %s held automatically (%s); without it, %s", loc.Cell, orPending(holdID), out.Summary)
	return out, nil
}

// currentWave judges the current wave once all waves together have not
// regressed: only all waves' evidence pauses the rollout (one regression
// test per metric keeps the false-pause rate at Alpha per metric), so a
// current wave that looks worse on its own waits for more evidence instead.
func currentWave(cfg health.GateConfig, base health.Baseline, current map[string]int64, wave int, planned int64, all map[string]int64) health.GateResult {
	r := health.EvaluateWave(cfg, base, current, wave, planned, all)
	if r.Verdict == health.Regressed {
		r.Verdict = health.Inconclusive
		r.Summary = strings.Replace(r.Summary, fmt.Sprintf("wave %d regressed", wave+1), fmt.Sprintf("wave %d inconclusive: on its own it looks worse", wave+1), 1) +
			", but all waves together do not; waiting for more evidence"
	}
	return r
}

// riskAdjusted scales the failure baseline by the exposed devices'
// relative predicted risk, keeping the absolute tolerance of the fleet's.
func riskAdjusted(cfg health.GateConfig, base health.Baseline, relative float64) health.Baseline {
	if relative <= 0 || relative == 1 {
		return base
	}
	base.FailureTolerance = cfg.Margin * base.Failure
	base.Failure = min(0.5, base.Failure*relative)
	base.Source += fmt.Sprintf(", × %.2f for the predicted risk of the devices exposed", relative)
	return base
}

func orPending(id string) string {
	if id == "" {
		return "to be created"
	}
	return id
}

// CellRule writes a cohort cell ("arch=x64|oem=contoso") as a hold rule.
func CellRule(cell string) string {
	var terms []string
	for _, kv := range strings.Split(cell, "|") {
		k, v, _ := strings.Cut(kv, "=")
		terms = append(terms, fmt.Sprintf("device.attributes[%s] == %s", strconv.Quote(k), strconv.Quote(v)))
	}
	return strings.Join(terms, " && ")
}
