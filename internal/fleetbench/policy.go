package fleetbench

import (
	"fmt"
	"time"

	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

// Observed is what a policy sees at an hour: devices by reported event,
// overall and per wave of its plan, and, on demand, per cohort cell.
type Observed struct {
	All     map[string]int64
	Waves   []map[string]int64
	Offered []int64 // devices offered (installing) per wave
	Size    []int64 // devices in each wave's slice of the fleet
	// Cells returns counts per cohort cell over all waves and in wave w.
	Cells func(w int) ([]health.CellDevices, map[string]map[string]int64, error)
	// Ambient and AmbientBefore: the failure rate of other releases'
	// installs during the rollout, matched hour by hour with this
	// release's (health.TimeMatched), and in the week before it.
	Ambient, AmbientBefore health.Rate
	// PriorCells: the past release's device counts per cohort cell.
	PriorCells []health.CellDevices
	// AmbientCell is the same for one cohort cell's devices.
	AmbientCell func(cell string) (now, before health.Rate, err error)
	// Risk: for risk-ordered policies, the predicted failure risk summed
	// over the devices that reported, overall and per wave.
	Risk *RiskSums
}

// RiskSums are predicted risks summed over reporting devices, and the
// fleet's mean predicted risk.
type RiskSums struct {
	All   float64
	Waves []float64
	Fleet float64
}

// relative is the mean predicted risk of n reporting devices whose risks
// sum to sum, relative to the fleet's (0 when nothing reported).
func (r *RiskSums) relative(sum float64, n int64) float64 {
	if n == 0 || r.Fleet <= 0 {
		return 0
	}
	return sum / float64(n) / r.Fleet
}

// orderer is a policy that orders devices by predicted risk, with a share
// of them explored at random.
type orderer interface{ explore() float64 }

// Decision is what a policy does at an hour.
type Decision struct {
	Percent float64  // share of the fleet's buckets offered
	Halted  bool     // stopped for good
	Holds   []string // CEL rules of holds created now
}

// Policy decides exposure hour by hour.
type Policy interface {
	Name() string
	// Waves are the percentages its devices are grouped by (for Observed).
	Waves() []float64
	Step(h int, obs *Observed) Decision
}

func failed(m map[string]int64) int64 { return m["install_failed"] + m["download_failed"] }
func reportedOf(m map[string]int64) int64 {
	return m["install_succeeded"] + failed(m)
}

// waves is the rollout layout every policy groups devices by: a canary of
// about 1,500 devices (big enough to catch a gross regression, too small
// to prove health), a first wave of about 10,000 (enough to prove the
// failure rate healthy), then 10% and everyone. On small fleets the waves
// that would not grow are merged.
func waves(n int) []float64 {
	var out []float64
	for _, pct := range []float64{100 * 1500 / float64(n), 100 * 10000 / float64(n), max(10, 300*10000/float64(n)), 100} {
		pct = min(pct, 100)
		if len(out) == 0 || pct > out[len(out)-1] {
			out = append(out, pct)
		}
	}
	return out
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ringmaster is Ringmaster's policy: the server's rollout.Step and health
// gate (controller.Judge) with automatic cohort holds.
type ringmaster struct {
	name   string
	plan   rollout.Plan
	status rollout.Status
	base   health.Baseline
	held   map[string]bool
}

func newRingmaster(n int) *ringmaster {
	var ws []rollout.Wave
	for _, p := range waves(n) {
		ws = append(ws, rollout.Wave{Percent: p})
	}
	plan := rollout.Plan{Waves: ws, Bake: rollout.Duration(2 * time.Hour),
		Gate: &rollout.Gate{BaselineFailure: baseFailure, BaselineRollback: baseRollback, BaselineCrash: baseCrash, AutoHold: "active", Margin: 0.5, MinCompleteness: 0.4}}
	return &ringmaster{name: "ringmaster", plan: plan, status: rollout.Initial(),
		base: controller.DeclaredBaseline(plan.Gate, health.Baseline{Source: "fleet"}), held: map[string]bool{}}
}

func (r *ringmaster) Name() string { return r.name }

// judgesCohorts marks Ringmaster's policies: the simulation keeps cohort
// cells, other releases' installs and the past release's cells for them.
func (r *ringmaster) judgesCohorts() {}

// riskOrdered is Ringmaster's policy with risk-ordered targeting: devices
// are placed by risk.Model.Position (least risky first, a fifth of every
// wave explored at random) and the gate's baseline follows the predicted
// risk of the devices that reported.
type riskOrdered struct{ *ringmaster }

func newRiskOrdered(n int) *riskOrdered {
	r := newRingmaster(n)
	r.name = "ringmaster-risk"
	return &riskOrdered{r}
}

// exploreShare is the share of every wave chosen at random.
const exploreShare = 0.2

func (riskOrdered) explore() float64 { return exploreShare }
func (r *ringmaster) Waves() []float64 {
	out := make([]float64, len(r.plan.Waves))
	for i, w := range r.plan.Waves {
		out[i] = w.Percent
	}
	return out
}

func (r *ringmaster) Step(h int, obs *Observed) Decision {
	now := epoch.Add(time.Duration(h) * time.Hour)
	var d Decision
	observations := rollout.Observations{}
	if rollout.Watched(r.plan, r.status, now) {
		wave := max(r.status.Wave, 0)
		ev := controller.Evidence{Wave: wave, Planned: obs.Size[wave], All: obs.All, Current: obs.Waves[wave],
			Cells: func() ([]health.CellDevices, map[string]map[string]int64, error) { return obs.Cells(wave) }, AmbientCell: obs.AmbientCell, PriorCells: obs.PriorCells}
		if obs.Risk != nil {
			ev.RiskAll = obs.Risk.relative(obs.Risk.All, reportedOf(obs.All))
			ev.RiskCurrent = obs.Risk.relative(obs.Risk.Waves[wave], reportedOf(obs.Waves[wave]))
		}
		base, _ := health.AdjustForAmbient(r.base, obs.Ambient, obs.AmbientBefore)
		g, err := controller.Judge(r.plan.Gate, base, ev, func(rule, _ string) (controller.HoldState, string, error) {
			if !r.held[rule] {
				r.held[rule] = true
				d.Holds = append(d.Holds, rule)
			}
			return controller.HoldIsActive, "hold", nil
		})
		if err != nil {
			panic(err) // the simulator's cells never fail
		}
		observations.Gate = &rollout.GateObservation{Verdict: string(g.Verdict), Summary: g.Summary}
	}
	r.status, _ = rollout.Step(r.plan, r.status, observations, now)
	switch r.status.State {
	case rollout.Paused, rollout.Halted, rollout.Cancelled:
		d.Halted = true // the gate paused it; in the simulation nobody resumes
	case rollout.Running, rollout.Completed:
		d.Percent = r.status.Percent
	}
	return d
}

// hawkbit: rollout groups that advance when a share of the group has
// finished and stop when failures reach an error threshold of the group.
type hawkbit struct {
	groups    []float64
	threshold float64
	g         int
}

func (p *hawkbit) Name() string     { return fmt.Sprintf("hawkbit-%g%%", 100*p.threshold) }
func (p *hawkbit) Waves() []float64 { return p.groups }
func (p *hawkbit) Step(h int, obs *Observed) Decision {
	size := float64(obs.Size[p.g])
	if size > 0 && float64(failed(obs.Waves[p.g]))/size >= p.threshold {
		return Decision{Halted: true}
	}
	if p.g < len(p.groups)-1 && size > 0 && float64(reportedOf(obs.Waves[p.g]))/size >= 0.8 {
		p.g++
	}
	return Decision{Percent: p.groups[p.g]}
}

// wufb: offers paced over days with a rollback threshold on the observed
// failure rate.
type wufb struct {
	perDay float64 // percent of the fleet per day
}

func (p *wufb) Name() string     { return "wufb-paced" }
func (p *wufb) Waves() []float64 { return []float64{100} }
func (p *wufb) Step(h int, obs *Observed) Decision {
	if n := reportedOf(obs.All); n >= 1000 && float64(failed(obs.All))/float64(n) >= 1.5*baseFailure {
		return Decision{Halted: true}
	}
	return Decision{Percent: min(100, p.perDay*float64(h)/24)}
}

// rings: fixed rings, each baking a fixed time, with an end-of-bake check.
type rings struct {
	rings []float64
	bake  int // hours
	r     int
	start int
}

func (p *rings) Name() string {
	if p.bake%24 == 0 {
		return fmt.Sprintf("rings-%dd", p.bake/24)
	}
	return fmt.Sprintf("rings-%dh", p.bake)
}
func (p *rings) Waves() []float64 { return p.rings }
func (p *rings) Step(h int, obs *Observed) Decision {
	if h-p.start >= p.bake && p.r < len(p.rings)-1 {
		w := obs.Waves[p.r]
		if n := reportedOf(w); n >= 100 && float64(failed(w))/float64(n) > 1.5*baseFailure {
			return Decision{Halted: true}
		}
		p.r, p.start = p.r+1, h
	}
	return Decision{Percent: p.rings[p.r]}
}

// rateLimit: offers throttled over three days, never halted.
type rateLimit struct{}

func (rateLimit) Name() string     { return "rate-limit" }
func (rateLimit) Waves() []float64 { return []float64{100} }
func (rateLimit) Step(h int, _ *Observed) Decision {
	return Decision{Percent: min(100, float64(h)*100/72)}
}

// Policies returns a fresh instance of every policy for a fleet of n.
func Policies(n int) []Policy {
	ws := waves(n)
	return []Policy{
		newRingmaster(n), newRiskOrdered(n),
		&hawkbit{groups: ws, threshold: 0.03}, &hawkbit{groups: ws, threshold: 0.05}, &hawkbit{groups: ws, threshold: 0.10},
		&wufb{perDay: 25},
		&rings{rings: ws, bake: 24}, &rings{rings: ws, bake: 48}, &rings{rings: ws, bake: 168},
		rateLimit{},
	}
}
