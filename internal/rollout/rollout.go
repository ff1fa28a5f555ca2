// Package rollout is the rollout policy: a deployment's plan (waves, bake
// times, schedule, deadline, approvals), its status, and the pure functions
// that move it — Step for the passage of time and Apply for operators'
// commands. The controller, the tests and simulations all call these.
package rollout

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/duration"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// State is where a deployment is in its life.
type State string

const (
	Scheduled State = "scheduled" // waiting for its start time or first approval
	Running   State = "running"   // exposing devices wave by wave
	Paused    State = "paused"    // no offers until resumed
	Completed State = "completed" // every wave done: offered to the whole audience
	Halted    State = "halted"    // stopped for good (emergency stop); no offers
	Cancelled State = "cancelled" // withdrawn; no offers
)

// Terminal reports whether nothing can move the deployment any more.
func (s State) Terminal() bool { return s == Halted || s == Cancelled }

// Offering reports whether devices in the exposed waves are offered.
func (s State) Offering() bool { return s == Running || s == Completed }

// Duration is a time.Duration that reads as "24h" or "7d" and writes as
// "24h0m0s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("durations are strings such as \"24h\" or \"7d\"")
	}
	v, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Wave is one step of a rollout. Percent is cumulative: the share of the
// audience exposed once the wave has started. A paced wave instead grows by
// DevicesPerPeriod devices every Period, up to Percent (100 if unset).
type Wave struct {
	Percent          float64  `json:"percent,omitempty"`
	DevicesPerPeriod int64    `json:"devices_per_period,omitempty"`
	Period           Duration `json:"period,omitempty"`
	// Bake is how long the wave runs before the next starts (the plan's
	// Bake when zero).
	Bake Duration `json:"bake,omitempty"`
}

// Window is a daily maintenance window in the device's local time, from
// Start to End minutes after midnight (it may wrap past midnight). The
// device's time zone comes from its "tz" attribute (an IANA name such as
// "Europe/Berlin" or an offset such as "+02:00"); UTC without one.
type Window struct {
	Start int `json:"start_minute"`
	End   int `json:"end_minute"`
}

// Plan is how a deployment rolls out.
type Plan struct {
	// Ring names the ring the deployment targets; empty means every device
	// of the product.
	Ring string `json:"ring,omitempty"`
	// Audience is a CEL rule further narrowing the devices.
	Audience string `json:"audience,omitempty"`
	Waves    []Wave `json:"waves"`
	// Bake is the default time each wave runs before the next.
	Bake Duration `json:"bake,omitempty"`
	// Start, when set, is when the first wave may start.
	Start *time.Time `json:"start,omitempty"`
	// Deadline, when set, is when the whole audience is offered regardless
	// of bake times (approvals are still required); devices are told it.
	Deadline *time.Time `json:"deadline,omitempty"`
	// Expedite offers at once outside maintenance windows and asks devices
	// to check back soon.
	Expedite bool `json:"expedite,omitempty"`
	// RequireApproval makes every wave wait for a human's approval.
	RequireApproval bool `json:"require_approval,omitempty"`
	// Window limits offers to a daily maintenance window.
	Window *Window `json:"maintenance_window,omitempty"`
	// Gate, when set, judges each wave's health: a regression pauses the
	// deployment, and a wave gives way to the next only when healthy. A
	// plan of more than one wave is gated with the defaults unless NoGate.
	Gate *Gate `json:"gate,omitempty"`
	// NoGate rolls a multi-wave plan out without a health gate, on purpose.
	NoGate bool `json:"no_gate,omitempty"`
	// Order is how devices line up across the waves: "" or "hash" (a
	// uniform hash of the device id), or "risk" (least predicted risk
	// first, with an exploration share chosen at random; needs a trained
	// risk model of the product).
	Order string `json:"order,omitempty"`
	// Explore is the share of every wave of a risk-ordered rollout chosen
	// at random, so the health gates see the whole population (default
	// 0.2, at least 0.05).
	Explore float64 `json:"explore,omitempty"`
	// RiskModel is the model a risk-ordered rollout orders by, pinned when
	// the deployment is created (the product's newest), so the order never
	// changes under a running rollout.
	RiskModel string `json:"risk_model,omitempty"`
	// Promotions record each move to a ring of higher rank: from the
	// wave each names, Ring is the audience and the earlier rings'
	// devices stay offered in full.
	Promotions []Promotion `json:"promotions,omitempty"`
	// Rollback, when set, makes this deployment a rollback: its (earlier)
	// version is offered only to devices running the bad deployment's
	// version, and they accept it because the offer says so.
	Rollback *Rollback `json:"rollback,omitempty"`
}

// Promotion is one move of a deployment to the next ring: From was the
// ring before, and waves from AtWave on roll out to the new one.
type Promotion struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	AtWave int       `json:"at_wave"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
}

// segment returns the first wave of the ring segment wave i belongs to
// (waves restart their percentages at each promotion).
func (p Plan) segment(i int) int {
	start := 0
	for _, pr := range p.Promotions {
		if pr.AtWave <= i {
			start = pr.AtWave
		}
	}
	return start
}

// PromotedRings lists the rings a deployment was promoted from: their
// devices are offered whatever their position.
func (p Plan) PromotedRings() []string {
	out := make([]string, len(p.Promotions))
	for i, pr := range p.Promotions {
		out[i] = pr.From
	}
	return out
}

// Promote moves a completed deployment on to ring to (of higher rank than
// its own: the caller checks ranks), appending waves for it, and starts
// the first of them. The deployment keeps its id, events, gate and health
// history; the earlier ring's devices stay offered. It is a pure function.
func Promote(p Plan, s Status, to string, waves []Wave, actor, reason string, now time.Time) (Plan, Status, Action, error) {
	switch {
	case strings.TrimSpace(reason) == "":
		return p, s, Action{}, fault.Field("reason", "say why the deployment moves on to %s; the reason is recorded with the change", to)
	case p.Rollback != nil:
		return p, s, Action{}, fault.E(fault.Conflict, "a rollback is not promoted: it goes to the devices on the bad version wherever they are")
	case p.Ring == "":
		return p, s, Action{}, fault.E(fault.Conflict, "the deployment has no ring: it already targets every device of its product")
	case s.State != Completed:
		return p, s, Action{}, fault.E(fault.Conflict, "deployment is %s; promote it once it has completed its waves in ring %s", s.State, p.Ring)
	case to == p.Ring:
		return p, s, Action{}, fault.Field("ring", "the deployment already targets ring %s", to)
	}
	if len(waves) == 0 {
		waves = slices.Clone(p.Waves[p.segment(len(p.Waves)-1):])
	}
	next := p
	next.Waves = append(slices.Clone(p.Waves), waves...)
	next.Promotions = append(slices.Clone(p.Promotions), Promotion{From: p.Ring, To: to, AtWave: len(p.Waves), At: now, By: actor, Reason: reason})
	next.Ring = to
	if err := next.Validate(); err != nil {
		return p, s, Action{}, err
	}
	s.By, s.Reason = actor, reason
	var acts []Action
	s, acts = startWave(next, s, len(p.Waves), now, nil)
	if s.State == Completed { // the first new wave waits for approval: none of the new ring yet
		s.State, s.Percent = Running, 0
	}
	act := Action{Kind: "promoted", Wave: len(p.Waves), Percent: s.Percent, Detail: fmt.Sprintf("ring %s -> %s: %s", p.Ring, to, reason)}
	if len(acts) > 0 {
		act.Detail += "; " + acts[0].Detail
	}
	return next, s, act, nil
}

// Rollback names the bad deployment a rollback undoes.
type Rollback struct {
	// Deployment is the bad deployment; UpdateID and Version its update.
	Deployment string `json:"deployment"`
	UpdateID   string `json:"update_id"`
	Version    string `json:"version"`
	Reason     string `json:"reason"`
}

// Watch is how long a gated deployment stays under its health gate after
// its last wave started: reports keep arriving (telemetry is late, crashes
// surface days after install) and devices that had not checked in yet are
// still offered it. A regression then pauses the offers; automatic holds
// still apply.
const Watch = 7 * 24 * time.Hour

// Watched reports whether the health gate judges a deployment at now:
// while it runs, and for Watch after its last wave started.
func Watched(p Plan, s Status, now time.Time) bool {
	return p.Gate != nil && (s.State == Running || s.State == Completed && now.Sub(s.WaveStarted) < Watch)
}

// OrderRisk orders a rollout by predicted risk.
const OrderRisk = "risk"

// DefaultExplore is a risk-ordered rollout's exploration share.
const DefaultExplore = 0.2

// Position places a device in the deployment's order, in the space of
// targeting.Bucket: a wave at p percent exposes positions below
// targeting.Threshold(p). With Order "risk" and the plan's model it is the
// device's risk position (risk.Model.Position), else its hash bucket.
func (p Plan) Position(salt, deviceID string, attrs map[string]string, m *risk.Model) uint32 {
	if p.Order != OrderRisk || m == nil {
		return targeting.Bucket(salt, deviceID)
	}
	return m.Position(salt, deviceID, m.Score(attrs), p.ExploreShare())
}

// ExploreShare is the plan's exploration share (risk-ordered plans).
func (p Plan) ExploreShare() float64 {
	if p.Explore > 0 {
		return p.Explore
	}
	return DefaultExplore
}

// Gate configures a deployment's health gate (zero values take defaults).
type Gate struct {
	// AllowInconclusive lets a baked wave advance without enough evidence
	// either way (a regression still pauses).
	AllowInconclusive bool    `json:"allow_inconclusive,omitempty"`
	Alpha             float64 `json:"alpha,omitempty"`
	Beta              float64 `json:"beta,omitempty"`
	Margin            float64 `json:"margin,omitempty"`
	MinCompleteness   float64 `json:"min_completeness,omitempty"`
	// Baseline rates; unset ones come from the product's previous release
	// with enough reports, else the defaults (failure 2%, rollback and
	// crash 1%).
	BaselineFailure  float64 `json:"baseline_failure,omitempty"`
	BaselineRollback float64 `json:"baseline_rollback,omitempty"`
	BaselineCrash    float64 `json:"baseline_crash,omitempty"`
	// AutoHold, "active" or "proposed", holds a cohort that explains a
	// regression instead of pausing the whole rollout: at once, or as a
	// proposal a human activates (the rollout pauses meanwhile). Empty
	// pauses on every regression.
	AutoHold string `json:"auto_hold,omitempty"`
}

// GateActor names the health gate in events and pauses.
const GateActor = "health-gate"

// GateObservation is the gate's verdict on the current wave.
type GateObservation struct {
	Verdict string // healthy, inconclusive, regressed
	Summary string // the numbers behind it
}

// AllAtOnce is the plan of a deployment without options: one wave at 100%.
func AllAtOnce() Plan { return Plan{Waves: []Wave{{Percent: 100}}} }

// ParseWaves reads "1,10,50,100" into percentage waves.
func ParseWaves(s string) ([]Wave, error) {
	var ws []Wave
	for _, f := range strings.Split(s, ",") {
		var p float64
		if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "%")), "%g", &p); err != nil {
			return nil, fault.Field("waves", "%q is not a percentage", f)
		}
		ws = append(ws, Wave{Percent: p})
	}
	return ws, nil
}

// Validate checks a plan.
func (p *Plan) Validate() error {
	if len(p.Waves) == 0 {
		p.Waves = []Wave{{Percent: 100}}
	}
	if len(p.Waves) > 50 {
		return fault.Field("waves", "at most 50 waves")
	}
	prev := 0.0
	for i, w := range p.Waves {
		f := fmt.Sprintf("waves[%d]", i)
		target := w.target()
		if i > 0 && p.segment(i) == i { // a promotion: the new ring's waves start again
			if prev != 100 {
				return fault.Field(f, "the waves before a promotion must reach 100%%")
			}
			prev = 0
		}
		switch {
		case w.Percent < 0 || w.Percent > 100:
			return fault.Field(f+".percent", "%g is outside 0-100", w.Percent)
		case w.DevicesPerPeriod < 0:
			return fault.Field(f+".devices_per_period", "must not be negative")
		case w.DevicesPerPeriod > 0 && w.Period <= 0:
			return fault.Field(f+".period", "a paced wave needs a period")
		case w.DevicesPerPeriod == 0 && w.Percent == 0:
			return fault.Field(f, "give a percent or devices_per_period")
		case target < prev:
			return fault.Field(f+".percent", "%g%% is below the previous wave's %g%%: waves only add devices", target, prev)
		case w.Bake < 0:
			return fault.Field(f+".bake", "must not be negative")
		}
		prev = target
	}
	if last := p.Waves[len(p.Waves)-1]; last.target() != 100 {
		return fault.Field("waves", "the last wave must reach 100%%, not %g%%", last.target())
	}
	if p.Bake < 0 {
		return fault.Field("bake", "must not be negative")
	}
	switch {
	case p.NoGate && p.Gate != nil:
		return fault.Field("no_gate", "a plan cannot both set a gate and say no_gate")
	case len(p.Waves) > 1 && p.Gate == nil && !p.NoGate:
		// Safe by default: waves are only as safe as the health check
		// between them.
		p.Gate = &Gate{}
	}
	if p.Window != nil && (p.Window.Start < 0 || p.Window.Start >= 1440 || p.Window.End < 0 || p.Window.End > 1440 || p.Window.Start == p.Window.End) {
		return fault.Field("maintenance_window", "minutes must be within a day and start must differ from end")
	}
	if p.Gate != nil && p.Gate.AutoHold != "" && p.Gate.AutoHold != "active" && p.Gate.AutoHold != "proposed" {
		return fault.Field("gate.auto_hold", "must be active, proposed or empty, not %q", p.Gate.AutoHold)
	}
	if g := p.Gate; g != nil && (g.Alpha < 0 || g.Alpha >= 1 || g.Beta < 0 || g.Beta >= 1 || g.Margin < 0 || g.MinCompleteness < 0 ||
		g.MinCompleteness > 1 || g.BaselineFailure < 0 || g.BaselineFailure >= 1 || g.BaselineRollback < 0 || g.BaselineRollback >= 1 ||
		g.BaselineCrash < 0 || g.BaselineCrash >= 1) {
		return fault.Field("gate", "alpha, beta and baselines must be in [0, 1), margin and min_completeness non-negative (min_completeness at most 1)")
	}
	switch {
	case p.Order != "" && p.Order != "hash" && p.Order != OrderRisk:
		return fault.Field("order", "must be hash, risk or empty, not %q", p.Order)
	case p.Explore != 0 && (p.Explore < 0.05 || p.Explore > 1):
		return fault.Field("explore", "%g is outside 0.05-1: a risk-ordered rollout explores at least 5%% of every wave at random", p.Explore)
	case p.Order != OrderRisk && (p.Explore != 0 || p.RiskModel != ""):
		return fault.Field("order", "explore and risk_model apply to risk-ordered rollouts (order \"risk\")")
	}
	if p.Start != nil && p.Deadline != nil && !p.Deadline.After(*p.Start) {
		return fault.Field("deadline", "must be after the start")
	}
	return nil
}

func (w Wave) target() float64 {
	if w.DevicesPerPeriod > 0 && w.Percent == 0 {
		return 100
	}
	return w.Percent
}

func (p Plan) bake(i int) time.Duration {
	if b := p.Waves[i].Bake; b > 0 {
		return time.Duration(b)
	}
	return time.Duration(p.Bake)
}

// Status is what the controller keeps for a deployment.
type Status struct {
	State State `json:"state"`
	// Wave is the index of the current wave; -1 before the first.
	Wave int `json:"wave"`
	// WaveStarted is when the current wave started (moved forward by
	// pauses, so bake time counts only running time).
	WaveStarted time.Time `json:"wave_started,omitzero"`
	// Percent is the share of the audience currently exposed.
	Percent float64 `json:"percent"`
	// Approved is the highest wave index a human approved; -1 for none.
	Approved int `json:"approved"`
	// AwaitingApproval is set while the next wave waits for a human.
	AwaitingApproval bool `json:"awaiting_approval,omitempty"`
	// PausedFrom is the state a pause interrupted; PausedAt when.
	PausedFrom State     `json:"paused_from,omitempty"`
	PausedAt   time.Time `json:"paused_at,omitzero"`
	// By and Reason say who or what made the last manual change and why.
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Initial is the status of a new deployment.
func Initial() Status { return Status{State: Scheduled, Wave: -1, Approved: -1} }

// Observations are facts the controller gathers for Step.
type Observations struct {
	// AudienceSize estimates how many devices the deployment targets (for
	// paced waves); zero when unknown.
	AudienceSize int64
	// Gate is the health gate's verdict on the current wave, when the plan
	// has a gate.
	Gate *GateObservation
}

// Action is something Step or Apply did, for the event log.
type Action struct {
	Kind    string  `json:"kind"` // wave_started, exposure_raised, approval_requested, completed, gate_paused, paused, resumed, halted, cancelled, approved, advanced
	Wave    int     `json:"wave"`
	Percent float64 `json:"percent"`
	Detail  string  `json:"detail,omitempty"`
	// By, when set, is the actor the event is recorded as (the health gate
	// acting within a controller tick).
	By string `json:"-"`
}

// Step advances a deployment for the passage of time: it starts the first
// wave at the start time, raises paced waves, starts the next wave when the
// current one has baked (or the deadline has come), asks for approval where
// the plan requires it, and completes the rollout. It is a pure function.
func Step(p Plan, s Status, obs Observations, now time.Time) (Status, []Action) {
	var acts []Action
	switch s.State {
	case Scheduled:
		if p.Start != nil && now.Before(*p.Start) {
			return s, nil
		}
		return startWave(p, s, 0, now, acts)
	case Running, Completed:
	default:
		return s, nil
	}
	if Watched(p, s, now) && obs.Gate != nil && obs.Gate.Verdict == "regressed" {
		s.PausedFrom, s.PausedAt, s.State = s.State, now, Paused
		s.By, s.Reason = GateActor, obs.Gate.Summary
		return s, append(acts, Action{Kind: "gate_paused", Wave: s.Wave, Percent: s.Percent, Detail: obs.Gate.Summary, By: GateActor})
	}
	if s.State == Completed {
		return s, nil
	}
	w := p.Waves[s.Wave]
	if w.DevicesPerPeriod > 0 {
		if pct := pacedPercent(p, s, obs, now); pct > s.Percent {
			s.Percent = pct
			acts = append(acts, Action{Kind: "exposure_raised", Wave: s.Wave, Percent: pct})
		}
		if s.Percent < w.target() && !pastDeadline(p, now) {
			return s, acts
		}
	}
	if !pastDeadline(p, now) && now.Sub(s.WaveStarted) < p.bake(s.Wave) {
		return s, acts
	}
	if !gatePasses(p, obs) {
		return s, acts // baked, but the gate has not said healthy (a deadline does not override safety)
	}
	if s.Wave == len(p.Waves)-1 {
		s.State, s.Percent = Completed, 100
		return s, append(acts, Action{Kind: "completed", Wave: s.Wave, Percent: 100})
	}
	return startWave(p, s, s.Wave+1, now, acts)
}

func startWave(p Plan, s Status, i int, now time.Time, acts []Action) (Status, []Action) {
	if p.RequireApproval && s.Approved < i {
		if !s.AwaitingApproval {
			s.AwaitingApproval = true
			acts = append(acts, Action{Kind: "approval_requested", Wave: i, Percent: s.Percent,
				Detail: fmt.Sprintf("wave %d (%s) needs approval", i+1, describeWave(p.Waves[i]))})
		}
		return s, acts
	}
	s.State, s.Wave, s.WaveStarted, s.AwaitingApproval = Running, i, now, false
	w := p.Waves[i]
	if w.DevicesPerPeriod == 0 {
		s.Percent = w.Percent
	} // a paced wave grows from where the last one ended
	return s, append(acts, Action{Kind: "wave_started", Wave: i, Percent: s.Percent, Detail: describeWave(w)})
}

func describeWave(w Wave) string {
	if w.DevicesPerPeriod > 0 {
		return fmt.Sprintf("%d devices per %s up to %g%%", w.DevicesPerPeriod, time.Duration(w.Period), w.target())
	}
	return fmt.Sprintf("%g%%", w.Percent)
}

// pacedPercent is the exposure a paced wave has reached: DevicesPerPeriod
// more devices for every whole period since the wave started.
func pacedPercent(p Plan, s Status, obs Observations, now time.Time) float64 {
	w := p.Waves[s.Wave]
	if pastDeadline(p, now) {
		return w.target()
	}
	if obs.AudienceSize <= 0 {
		return s.Percent
	}
	periods := int64(now.Sub(s.WaveStarted) / time.Duration(w.Period))
	start := 0.0
	if s.Wave > 0 {
		start = p.Waves[s.Wave-1].target()
	}
	pct := start + float64(periods*w.DevicesPerPeriod)*100/float64(obs.AudienceSize)
	return min(pct, w.target())
}

func gatePasses(p Plan, obs Observations) bool {
	if p.Gate == nil {
		return true
	}
	if obs.Gate == nil {
		return false
	}
	return obs.Gate.Verdict == "healthy" || (obs.Gate.Verdict == "inconclusive" && p.Gate.AllowInconclusive)
}

func pastDeadline(p Plan, now time.Time) bool { return p.Deadline != nil && !now.Before(*p.Deadline) }

// Command is an operator's instruction.
type Command string

const (
	Pause   Command = "pause"
	Resume  Command = "resume"
	Halt    Command = "halt"
	Cancel  Command = "cancel"
	Approve Command = "approve"
	Advance Command = "advance"
)

// Reduces reports whether a command can only expose fewer devices (pause,
// halt, cancel); the others (resume, approve, advance) can widen exposure.
func (c Command) Reduces() bool { return c == Pause || c == Halt || c == Cancel }

// Commands lists every Command.
var Commands = []Command{Pause, Resume, Halt, Cancel, Approve, Advance}

// Apply carries out an operator's command, recording who and why. A command
// that makes no sense in the current state is a Conflict that says why.
func Apply(p Plan, s Status, cmd Command, actor, reason string, now time.Time) (Status, Action, error) {
	conflict := func(format string, args ...any) (Status, Action, error) {
		return s, Action{}, fault.E(fault.Conflict, format, args...)
	}
	if s.State.Terminal() {
		return conflict("deployment is %s; nothing can change it", s.State)
	}
	if strings.TrimSpace(reason) == "" {
		return s, Action{}, fault.Field("reason", "say why the deployment should %s; the reason is recorded with the change", cmd)
	}
	act := Action{Wave: s.Wave, Percent: s.Percent, Detail: reason}
	switch cmd {
	case Pause:
		if s.State == Paused {
			return conflict("deployment is already paused (by %s)", s.By)
		}
		s.PausedFrom, s.PausedAt, s.State = s.State, now, Paused
		act.Kind = "paused"
	case Resume:
		if s.State != Paused {
			return conflict("deployment is %s, not paused", s.State)
		}
		if s.PausedFrom == Running && !s.WaveStarted.IsZero() {
			s.WaveStarted = s.WaveStarted.Add(now.Sub(s.PausedAt)) // bake counts running time only
		}
		s.State, s.PausedFrom, s.PausedAt = s.PausedFrom, "", time.Time{}
		act.Kind = "resumed"
	case Halt:
		s.State = Halted
		act.Kind = "halted"
	case Cancel:
		s.State = Cancelled
		act.Kind = "cancelled"
	case Approve:
		next := s.Wave + 1
		if s.State == Completed || next >= len(p.Waves) {
			return conflict("no wave is left to approve")
		}
		if !p.RequireApproval {
			return conflict("this deployment's plan does not require approval")
		}
		if !s.AwaitingApproval {
			// An approval is for the wave that waits, judged on what its
			// predecessor showed: never a blank cheque for a wave to come.
			if s.State == Scheduled {
				return conflict("no wave is waiting for approval; wave 1 asks when the deployment starts")
			}
			return conflict("no wave is waiting for approval; wave %d asks when wave %d has baked", next+1, s.Wave+1)
		}
		s.Approved = next
		act.Kind, act.Wave = "approved", next
	case Advance:
		if s.State != Running {
			return conflict("only a running deployment can advance; it is %s", s.State)
		}
		next := s.Wave + 1
		if next >= len(p.Waves) {
			return conflict("deployment is in its last wave; it completes when that wave has baked")
		}
		if p.RequireApproval && s.Approved < next {
			return conflict("wave %d needs approval first", next+1)
		}
		var acts []Action
		s, acts = startWave(p, s, next, now, nil)
		act = acts[0]
		act.Kind, act.Detail = "advanced", reason
	default:
		return conflict("unknown command %q", cmd)
	}
	s.By, s.Reason = actor, reason
	return s, act, nil
}

// WaveShare is the percentage of the audience wave i adds.
func (p Plan) WaveShare(i int) float64 {
	if i < 0 || i >= len(p.Waves) {
		return 0
	}
	share := p.Waves[i].target()
	if i > 0 {
		share -= p.Waves[i-1].target()
	}
	return max(share, 0)
}

// WaveOf is the wave in which a device in bucket b is first exposed: the
// first wave whose target percentage admits the bucket.
//
// For a promoted deployment, it is the wave of the current ring's segment.
func (p Plan) WaveOf(b uint32) int {
	start := p.segment(len(p.Waves) - 1)
	for i, w := range p.Waves[start:] {
		if b < targeting.Threshold(w.target()) {
			return start + i
		}
	}
	return len(p.Waves) - 1
}
