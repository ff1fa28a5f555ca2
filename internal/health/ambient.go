package health

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

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

// Installs are finished installs and how many of them failed.
type Installs struct{ Failed, Of int64 }

// Hourly is installs by the hour they happened in (hours since the Unix
// epoch; any other origin serves as long as both sides share it).
type Hourly map[int64]Installs

// HourOf is t's hour in an Hourly.
func HourOf(t time.Time) int64 { return int64(math.Floor(float64(t.Unix()) / 3600)) }

// Count adds n devices with an install outcome (install_succeeded,
// install_failed, download_failed; others are ignored) in hour.
func (h Hourly) Count(hour int64, outcome string, n int64) {
	var in Installs
	switch outcome {
	case "install_failed", "download_failed":
		in = Installs{Failed: n, Of: n}
	case "install_succeeded":
		in = Installs{Of: n}
	default:
		return
	}
	c := h[hour]
	c.Failed, c.Of = c.Failed+in.Failed, c.Of+in.Of
	h[hour] = c
}

// Rate is the failure rate of the installs in hours [from, to).
func (h Hourly) Rate(from, to int64) Rate {
	var sum Installs
	for hour, c := range h {
		if hour >= from && hour < to {
			sum.Failed, sum.Of = sum.Failed+c.Failed, sum.Of+c.Of
		}
	}
	return NewRate(sum.Failed, sum.Of)
}

// matchSpan is how many hours either side of an install's hour the other
// installs it is matched with may fall: a day's incident shows in a few
// hours of a big fleet's installs, and a cohort's installs are sparse.
const matchSpan = 3

// TimeMatched is the failure rate the fleet's other installs give the
// hours a release's installs happened in: each of the release's installs
// expects the failure rate of the other installs within matchSpan hours
// of its own, and the result is the mean expectation, as a Rate whose Of
// is the effective number of other installs behind it (so its interval is
// as wide as the evidence). A reference that spans the whole rollout
// dilutes an incident with the quiet days around it, and a recent one
// forgets the installs made during it; matching hour by hour does
// neither. Hours of the release without other installs near them are left
// out.
func TimeMatched(release, others Hourly) Rate { return timeMatched(release, others, matchSpan) }

// CellSpans are the match spans, in hours, a cohort cell's reference
// widens through until it rests on minCellAmbient effective installs (see
// CellTimeMatched).
var CellSpans = []int64{matchSpan, 6, 12, 24}

// CellTimeMatched is TimeMatched for one cohort cell, whose other
// installs are sparse: when the other installs within matchSpan hours of
// the release's are too few to judge the cell by (minCellAmbient), it
// widens the span (CellSpans) until they are enough. A reference a
// little wider than an incident still shows it, where none at all leaves
// the cell to the fleet-wide reference, which dilutes an incident of one
// cohort with every other.
func CellTimeMatched(release, others Hourly) Rate {
	var r Rate
	for _, span := range CellSpans {
		if r = timeMatched(release, others, span); r.Of >= minCellAmbient {
			break
		}
	}
	return r
}

func timeMatched(release, others Hourly, span int64) Rate {
	hours := slices.Sorted(maps.Keys(release))
	weight := map[int64]float64{} // per other install of an hour, its share of the expectation
	var n float64
	for _, h := range hours {
		r := release[h]
		var near int64
		for g := h - span; g <= h+span; g++ {
			near += others[g].Of
		}
		if r.Of == 0 || near == 0 {
			continue
		}
		n += float64(r.Of)
		for g := h - span; g <= h+span; g++ {
			if others[g].Of > 0 {
				weight[g] += float64(r.Of) / float64(near)
			}
		}
	}
	if n == 0 {
		return NewRate(0, 0)
	}
	// The expectation is a weighted mean of the other installs' outcomes:
	// its variance is p(1-p) times the sum of squared weights, so the
	// effective sample is one over that sum.
	var p, sq float64
	for _, g := range slices.Sorted(maps.Keys(weight)) {
		w := weight[g] / n
		p += w * float64(others[g].Failed)
		sq += w * w * float64(others[g].Of)
	}
	eff := 1 / sq
	r := Rate{Events: int64(math.Round(p * eff)), Of: int64(math.Round(eff))}
	r.Value, r.Low, r.High = wilson(p, eff)
	return r
}

// ambientPrior is the weight, in devices, of the week-before rate in the
// "now" estimate: a few hours of other installs cannot swing the baseline
// on their own.
const ambientPrior = 2000

// minAmbientBefore is how many reports the week before needs to serve as
// the reference.
const minAmbientBefore = 1000

// AdjustForAmbient raises base's failure rate by the ratio of other
// installs' failure rate now (time-matched to the release's installs, see
// TimeMatched) to the week before, counting only the rise the evidence is
// sure of: "now" is shrunk toward the week before by ambientPrior devices,
// and the factor is at most 4. It never lowers the baseline (a quiet week
// makes no release look worse), and with too little reference it changes
// nothing.
func AdjustForAmbient(base Baseline, now, before Rate) (Baseline, Ambient) {
	a := Ambient{Factor: 1, Now: now, Before: before}
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
	base.Source += fmt.Sprintf(", × %.2f for the fleet's other installs (%.2f%% in the hours of this release's installs vs %.2f%% the week before)", a.Factor, 100*a.Now.Value, 100*a.Before.Value)
	return base, a
}

// minCellAmbient is how many other installs a cohort cell needs, now and
// the week before, for AdjustForCellAmbient to judge it.
const minCellAmbient = 100

// AdjustForCellAmbient is AdjustForAmbient for one cohort cell, which has
// far fewer other installs: it takes the upper end of the 95% interval of
// their failure rate now, unshrunk, relative to the week before. When the
// cell's other installs rose, the cell's baseline is the higher of base
// and the cell's own rate the week before, raised by that factor: a cohort
// that always fails more than the fleet (an old firmware) expects its own
// rate during an incident, not the fleet's. It is generous because it only
// ever spares a cohort a hold: a regression the release caused stands far
// above what its cohort's other installs show.
func AdjustForCellAmbient(base Baseline, now, before Rate) (Baseline, Ambient) {
	a := Ambient{Factor: 1, Now: now, Before: before}
	if a.Now.Of < minCellAmbient || a.Before.Of < minCellAmbient || a.Before.Value <= 0 {
		return base, a
	}
	a.Factor = min(4, max(1, a.Now.High/a.Before.Value))
	if a.Factor > 1 {
		base.Failure = min(0.5, max(base.Failure, a.Before.Value)*a.Factor)
	}
	return base, a
}
