package controller

import (
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

func outcomes(ok, failed int64) map[string]int64 {
	return map[string]int64{"install_succeeded": ok, "install_failed": failed, "offered": ok + failed}
}

var noHolds = func(string, string) (HoldState, string, error) { return NoHold, "", nil }

// TestJudgeCurrentWaveAloneDoesNotPause: a new wave that looks worse on its
// own while all waves together do not waits for evidence rather than
// pausing; all waves regressing pauses.
func TestJudgeCurrentWaveAloneDoesNotPause(t *testing.T) {
	gate := &rollout.Gate{}
	base := health.Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	ev := Evidence{Wave: 1, All: outcomes(20380, 420), Current: outcomes(360, 20)}
	r, err := Judge(gate, base, ev, noHolds)
	if err != nil || r.Verdict != health.Inconclusive || !strings.Contains(r.Summary, "on its own it looks worse") {
		t.Fatalf("current wave alone: %s (%s), %v", r.Verdict, r.Summary, err)
	}
	ev.All = outcomes(20000, 800)
	if r, _ := Judge(gate, base, ev, noHolds); r.Verdict != health.Regressed {
		t.Fatalf("all waves regressed: %s (%s)", r.Verdict, r.Summary)
	}
}

// TestJudgeAdjustsForPredictedRisk: 1.2% failures are a regression for
// devices predicted at a third of the fleet's risk (baseline 0.67%), and
// healthy for the fleet as a whole.
func TestJudgeAdjustsForPredictedRisk(t *testing.T) {
	gate := &rollout.Gate{Margin: 0.5}
	base := health.Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	ev := Evidence{All: outcomes(19760, 240), Current: outcomes(19760, 240)}
	if r, _ := Judge(gate, base, ev, noHolds); r.Verdict != health.Healthy {
		t.Fatalf("fleet baseline: %s (%s)", r.Verdict, r.Summary)
	}
	ev.RiskAll, ev.RiskCurrent = 1.0/3, 1.0/3
	r, _ := Judge(gate, base, ev, noHolds)
	if r.Verdict != health.Regressed || !strings.Contains(r.Baseline.Source, "predicted risk") {
		t.Fatalf("risk-adjusted: %s (%s)", r.Verdict, r.Summary)
	}
}

// TestJudgeForgivesAmbientCohort: a regression confined to a cohort whose
// other installs fail as much more than the week before is an ambient
// incident: no hold, no pause; the same regression with the cohort's other
// installs normal is held.
func TestJudgeForgivesAmbientCohort(t *testing.T) {
	gate := &rollout.Gate{AutoHold: "active"}
	base := health.Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	cellDevs := outcomes(1900, 100) // 5% in oem=contoso, 2% elsewhere
	ev := Evidence{All: outcomes(19500, 500), Current: outcomes(19500, 500),
		Cells: func() ([]health.CellDevices, map[string]map[string]int64, error) {
			return []health.CellDevices{{Cell: "oem=contoso", Devices: cellDevs}, {Cell: "oem=fabrikam", Devices: outcomes(17600, 400)}},
				map[string]map[string]int64{"oem=contoso": cellDevs}, nil
		}}
	var held []string
	holds := func(rule, _ string) (HoldState, string, error) {
		held = append(held, rule)
		return HoldIsActive, "hld_1", nil
	}
	// The cohort's other installs: 5% now against 2% the week before.
	ev.AmbientCell = func(string) (health.Rate, health.Rate, error) {
		return health.NewRate(50, 1000), health.NewRate(200, 10000), nil
	}
	r, err := Judge(gate, base, ev, holds)
	if err != nil || len(held) != 0 || r.Verdict == health.Regressed || !strings.Contains(r.Summary, "ambient incident") {
		t.Fatalf("ambient cohort: %s (%s), holds %v, %v", r.Verdict, r.Summary, held, err)
	}
	ev.AmbientCell = func(string) (health.Rate, health.Rate, error) {
		return health.NewRate(20, 1000), health.NewRate(200, 10000), nil
	}
	if r, err := Judge(gate, base, ev, holds); err != nil || len(held) != 1 || r.Cohort == nil {
		t.Fatalf("release-caused cohort regression: %s (%s), holds %v, %v", r.Verdict, r.Summary, held, err)
	}
}

// TestJudgeScansCohortsAgainstTheirOwnBaselines: a cohort too small to move
// the whole rollout is held when it fails well beyond its own rate in the
// previous release; a cohort that always failed more is not.
func TestJudgeScansCohortsAgainstTheirOwnBaselines(t *testing.T) {
	gate := &rollout.Gate{AutoHold: "active"}
	base := health.Baseline{Failure: 0.02, Rollback: 0.5, Crash: 0.5}
	cells := []health.CellDevices{
		{Cell: "model=old", Devices: outcomes(450, 50)}, // 10%: it failed 9% last time
		{Cell: "model=bad", Devices: outcomes(450, 50)}, // 10%: it failed 2% last time
		{Cell: "model=main", Devices: outcomes(39200, 600)},
	}
	prior := []health.CellDevices{
		{Cell: "model=old", Devices: outcomes(9100, 900)},
		{Cell: "model=bad", Devices: outcomes(9800, 200)},
		{Cell: "model=main", Devices: outcomes(98000, 2000)},
	}
	all := outcomes(40100, 700) // 1.7%: the rollout as a whole is fine
	ev := Evidence{All: all, Current: all, PriorCells: prior,
		Cells: func() ([]health.CellDevices, map[string]map[string]int64, error) {
			return cells, map[string]map[string]int64{}, nil
		}}
	var held []string
	holds := func(rule, _ string) (HoldState, string, error) {
		held = append(held, rule)
		return HoldIsActive, "hld_1", nil
	}
	r, err := Judge(gate, base, ev, holds)
	if err != nil || len(held) != 1 || held[0] != `device.attributes["model"] == "bad"` || r.Verdict == health.Regressed {
		t.Fatalf("scan: %s (%s), holds %v, %v", r.Verdict, r.Summary, held, err)
	}
	// Without the previous release's cells there is no scan.
	held = nil
	ev.PriorCells = nil
	if _, err := Judge(gate, base, ev, holds); err != nil || len(held) != 0 {
		t.Fatalf("scanned without baselines: holds %v, %v", held, err)
	}
}
