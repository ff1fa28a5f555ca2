package health

import "fmt"

// Ambient is how the fleet's other installs (every other deployment's)
// fare during a deployment compared with the week before it: an incident
// the release did not cause (a CDN outage, a broken antivirus signature)
// raises both, and the gate should not blame the release for it.
type Ambient struct {
	// Factor multiplies the baseline failure rate (1: no adjustment).
	Factor float64 `json:"factor"`
	Now    Rate    `json:"now"`
	Before Rate    `json:"before"`
}

// failureRate is the install failure rate of devices by outcome.
func failureRate(m map[string]int64) Rate {
	failed := m["install_failed"] + m["download_failed"]
	return NewRate(failed, failed+m["install_succeeded"])
}

// ambientPrior is the weight, in devices, of the week-before rate in the
// "now" estimate: a few hours of other installs cannot swing the baseline
// on their own.
const ambientPrior = 2000

// minAmbientBefore is how many reports the week before needs to serve as
// the reference.
const minAmbientBefore = 1000

// AdjustForAmbient raises base's failure rate by the ratio of other
// installs' failure rate now to the week before, counting only the rise
// the evidence is sure of: "now" is the lower end of its 95% interval,
// shrunk toward the week before by ambientPrior devices, and the factor is
// at most 4. It never lowers the baseline (a quiet week makes no release
// look worse), and with too little reference it changes nothing. now and
// before are devices by outcome, as Evaluate takes.
func AdjustForAmbient(base Baseline, now, before map[string]int64) (Baseline, Ambient) {
	a := Ambient{Factor: 1, Now: failureRate(now), Before: failureRate(before)}
	if a.Before.Of < minAmbientBefore || a.Before.Value <= 0 {
		return base, a
	}
	shrunk := (float64(a.Now.Events) + ambientPrior*a.Before.Value) / float64(a.Now.Of+ambientPrior)
	a.Factor = min(4, max(1, shrunk/a.Before.Value))
	if a.Factor < 1.01 {
		a.Factor = 1
		return base, a
	}
	base.Failure = min(0.5, base.Failure*a.Factor)
	base.Source += fmt.Sprintf(", × %.2f for the fleet's other installs (%.2f%% now vs %.2f%% the week before)", a.Factor, 100*a.Now.Value, 100*a.Before.Value)
	return base, a
}

// minCellAmbient is how many other installs a cohort cell needs, now and
// the week before, for AdjustForCellAmbient to judge it.
const minCellAmbient = 100

// AdjustForCellAmbient is AdjustForAmbient for one cohort cell, which has
// far fewer other installs: it takes the upper end of the 95% interval of
// their failure rate now, unshrunk, relative to the week before. It is
// generous because it only ever spares a cohort a hold: a regression the
// release caused stands far above what its cohort's other installs show.
func AdjustForCellAmbient(base Baseline, now, before map[string]int64) (Baseline, Ambient) {
	a := Ambient{Factor: 1, Now: failureRate(now), Before: failureRate(before)}
	if a.Now.Of < minCellAmbient || a.Before.Of < minCellAmbient || a.Before.Value <= 0 {
		return base, a
	}
	a.Factor = min(4, max(1, a.Now.High/a.Before.Value))
	base.Failure = min(0.5, base.Failure*a.Factor)
	return base, a
}

// WorseWindow returns whichever of two windows of other installs (say,
// since the rollout started and the last day) fails more, among those with
// at least minCellAmbient reports: the rollout's evidence spans both, so
// forgiving by the worse keeps an incident's failures forgiven after it
// ends and a fresh incident from being diluted by the days before it.
func WorseWindow(a, b map[string]int64) map[string]int64 {
	ra, rb := failureRate(a), failureRate(b)
	if rb.Of >= minCellAmbient && (ra.Of < minCellAmbient || rb.Value > ra.Value) {
		return b
	}
	return a
}
