// Package agent lets automated callers (AI agents through MCP) change
// rollouts with guardrails: anything that can only expose fewer devices
// happens at once; anything that can expose more is planned first (a
// dry-run with a forecast and a hash of the state it saw), then applied
// only if nothing changed since and only within the token's blast-radius
// budget (devices newly exposed per day and deployment). Beyond the budget
// the plan becomes an approval request that a human decides.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// Actions that widen exposure.
const (
	Resume      = "resume"
	Advance     = "advance"
	Approve     = "approve"
	ReleaseHold = "release_hold"
	Deploy      = "deploy"
	Promote     = "promote"
)

// Actions lists the widening actions a plan can hold.
var Actions = []string{Resume, Advance, Approve, ReleaseHold, Deploy, Promote}

// Change is what an agent wants to do.
type Change struct {
	Action       string        `json:"action" jsonschema:"one of resume, advance, approve, promote (a deployment), release_hold (a hold), deploy (an update)"`
	DeploymentID string        `json:"deployment_id,omitempty" jsonschema:"the deployment, for resume, advance, approve and promote"`
	Ring         string        `json:"ring,omitempty" jsonschema:"for promote: the ring to move on to (default: the next by rank)"`
	HoldID       string        `json:"hold_id,omitempty" jsonschema:"the hold, for release_hold"`
	Product      string        `json:"product,omitempty" jsonschema:"the product, for deploy"`
	Version      string        `json:"version,omitempty" jsonschema:"the version, for deploy"`
	Plan         *rollout.Plan `json:"plan,omitempty" jsonschema:"the rollout plan, for deploy (waves, bake, gate, audience); more than one wave is health-gated unless no_gate"`
	Reason       string        `json:"reason" jsonschema:"why; recorded in the audit log"`
}

// Forecast is what a change would expose.
type Forecast struct {
	// AudienceDevices: devices of the product the registry knows.
	AudienceDevices int64   `json:"audience_devices"`
	CurrentPercent  float64 `json:"current_percent"`
	NextPercent     float64 `json:"next_percent"`
	// NewlyExposed: devices the change would newly offer the update to.
	NewlyExposed      int64   `json:"newly_exposed"`
	FailureRate       float64 `json:"failure_rate"`
	FailureRateSource string  `json:"failure_rate_source"`
	ExpectedFailures  float64 `json:"expected_failures"`
	// Cohorts: the cohorts with the most failures so far, with what the
	// change would expose of each if their share stays the same.
	Cohorts []CohortForecast `json:"cohorts,omitempty"`
	Note    string           `json:"note,omitempty"`
}

// CohortForecast is one cohort's share of the exposure.
type CohortForecast struct {
	Cell             string  `json:"cell"`
	Share            float64 `json:"share"`
	FailureRate      float64 `json:"failure_rate"`
	NewlyExposed     int64   `json:"newly_exposed"`
	ExpectedFailures float64 `json:"expected_failures"`
}

// Plan is a planned change with its forecast and budget position.
type Plan struct {
	Hash     string   `json:"plan_hash"`
	Change   Change   `json:"change"`
	Target   string   `json:"target"`
	Forecast Forecast `json:"forecast"`
	// Budget is the token's daily budget for this target; Spent what its
	// applied plans used in the last 24 hours.
	Budget       int64 `json:"budget"`
	Spent        int64 `json:"spent"`
	WithinBudget bool  `json:"within_budget"`
}

// Outcome is what applying a plan did.
type Outcome struct {
	Applied  bool            `json:"applied"`
	Result   any             `json:"result,omitempty"`
	Approval *store.Approval `json:"approval,omitempty"`
	Plan     Plan            `json:"plan"`
}

// Config wires a Planner.
type Config struct {
	Store      *store.Store
	Controller *controller.Controller
	Rules      *targeting.Env
	// Refresh rebuilds the device snapshot after a change.
	Refresh func(ctx context.Context) error
	Now     func() time.Time
}

// Planner plans, applies and approves widening changes.
type Planner struct{ cfg Config }

// New returns a planner.
func New(cfg Config) *Planner { return &Planner{cfg: cfg} }

// defaultFailureRate is assumed when neither evidence nor a gate baseline says.
const defaultFailureRate = 0.02

// maxForecastDevices bounds the registry scan for hold forecasts.
const maxForecastDevices = 200_000

// state is what a plan depends on: if any of it differs at apply time,
// the plan is stale.
type state struct {
	Target string `json:"target"`
	Seen   any    `json:"seen"`
}

// resolve validates the change for p and returns its target, product,
// the state it depends on, and the forecast.
func (pl *Planner) resolve(ctx context.Context, p access.Principal, c *Change) (string, state, Forecast, error) {
	if err := catalog.ValidateReason("reason", c.Reason); err != nil {
		return "", state{}, Forecast{}, err
	}
	switch c.Action {
	case Resume, Advance, Approve:
		d, err := pl.deployment(ctx, p, c.DeploymentID)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		// Check the command is possible now, on a copy.
		next, _, err := rollout.Apply(d.Plan, d.Status, rollout.Command(c.Action), "plan", c.Reason, pl.cfg.Now())
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		counts, err := pl.cfg.Store.HealthCounts(ctx, d.ID, false)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		nextPercent := next.Percent
		if c.Action != Resume && d.Wave+1 < len(d.Plan.Waves) {
			nextPercent = math.Max(nextPercent, d.Plan.Waves[d.Wave+1].Percent)
		}
		f, err := pl.forecast(ctx, d.Product, d.Percent, nextPercent, d.Plan.Gate, counts)
		if c.Action == Resume {
			// Resuming re-opens the current wave to the devices the server
			// has not offered it to yet (its own records).
			unoffered, oerr := pl.unoffered(ctx, d)
			if oerr != nil {
				return "", state{}, Forecast{}, oerr
			}
			f.NewlyExposed = unoffered
			f.NextPercent = d.Percent
			f.ExpectedFailures = float64(f.NewlyExposed) * f.FailureRate
			scaleCohorts(&f)
		}
		return d.ID, state{Target: d.ID, Seen: map[string]any{"status": d.Status, "updated": d.UpdatedAt, "counts": counts}}, f, err
	case ReleaseHold:
		if err := catalog.ValidateID("hold_id", "hld", c.HoldID); err != nil {
			return "", state{}, Forecast{}, err
		}
		h, err := pl.cfg.Store.Hold(ctx, c.HoldID)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		if err := p.AuthorizeProduct(h.Product); err != nil {
			return "", state{}, Forecast{}, err
		}
		if h.Status == targeting.HoldReleased {
			return "", state{}, Forecast{}, fault.E(fault.Conflict, "hold %s is already released", h.ID)
		}
		f, err := pl.holdForecast(ctx, h)
		return h.ID, state{Target: h.ID, Seen: h}, f, err
	case Promote:
		d, err := pl.deployment(ctx, p, c.DeploymentID)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		var waves []rollout.Wave
		if c.Plan != nil {
			waves = c.Plan.Waves
		}
		to, err := pl.cfg.Controller.NextRing(ctx, d, c.Ring)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		// Check the promotion is possible now, on a copy.
		_, next, _, err := rollout.Promote(d.Plan, d.Status, to, waves, "plan", c.Reason, pl.cfg.Now())
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		counts, err := pl.cfg.Store.HealthCounts(ctx, d.ID, false)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		f, err := pl.forecast(ctx, d.Product, 0, next.Percent, d.Plan.Gate, counts)
		f.Note = "upper bound: the new ring's first wave as a share of every device of the product, before the ring narrows it"
		c.Ring = to
		return d.ID, state{Target: d.ID, Seen: map[string]any{"status": d.Status, "updated": d.UpdatedAt}}, f, err
	case Deploy:
		if c.Plan == nil {
			return "", state{}, Forecast{}, fault.Field("plan", "deploy needs a plan (waves at least)")
		}
		if err := c.Plan.Validate(); err != nil {
			return "", state{}, Forecast{}, err
		}
		if _, err := pl.cfg.Rules.Compile(c.Plan.Audience); err != nil {
			return "", state{}, Forecast{}, fault.Field("plan.audience", "%s", fault.Message(err))
		}
		if err := catalog.ValidateProductName("product", c.Product); err != nil {
			return "", state{}, Forecast{}, err
		}
		if err := p.AuthorizeProduct(c.Product); err != nil {
			return "", state{}, Forecast{}, err
		}
		v, err := catalog.ValidateVersion("version", c.Version)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		u, err := pl.cfg.Store.UpdateByVersion(ctx, c.Product, v)
		if err != nil {
			return "", state{}, Forecast{}, err
		}
		first := 100.0
		if len(c.Plan.Waves) > 0 && c.Plan.Waves[0].Percent > 0 {
			first = c.Plan.Waves[0].Percent
		}
		f, err := pl.forecast(ctx, u.Product, 0, first, c.Plan.Gate, nil)
		f.Note = "upper bound: the first wave's share of every device of the product, before ring and audience narrow it"
		return "update:" + u.ID, state{Target: u.ID, Seen: u.State}, f, err
	}
	return "", state{}, Forecast{}, fault.Field("action", "%q is not one of %s", c.Action, strings.Join(Actions, ", "))
}

// deployment loads the deployment a change names, if p may act on its
// product.
func (pl *Planner) deployment(ctx context.Context, p access.Principal, id string) (rollout.Deployment, error) {
	if err := catalog.ValidateID("deployment_id", "dep", id); err != nil {
		return rollout.Deployment{}, err
	}
	d, err := pl.cfg.Store.Deployment(ctx, id)
	if err != nil {
		return d, err
	}
	return d, p.AuthorizeProduct(d.Product)
}

// unoffered counts the registry's devices of the deployment's product
// whose place in its order is within the current share but whom the
// server has not offered the update yet (its offer records): what resuming
// exposes, before ring, audience and holds narrow it.
func (pl *Planner) unoffered(ctx context.Context, d rollout.Deployment) (int64, error) {
	devs, err := pl.cfg.Store.DevicesWithProduct(ctx, d.Product, maxForecastDevices)
	if err != nil {
		return 0, err
	}
	offered, err := pl.cfg.Store.OfferedDevices(ctx, d.ID)
	if err != nil {
		return 0, err
	}
	var m *risk.Model
	if d.Plan.Order == rollout.OrderRisk && d.Plan.RiskModel != "" {
		rm, err := pl.cfg.Store.RiskModelByID(ctx, d.Plan.RiskModel)
		if err != nil {
			return 0, err
		}
		m = rm.Model
	}
	threshold := targeting.Threshold(d.Percent)
	var n int64
	for _, dev := range devs {
		if !offered[dev.ID] && d.Plan.Position(d.Salt, dev.ID, dev.Attributes, m) < threshold {
			n++
		}
	}
	return n, nil
}

// forecast estimates the devices a move from one exposure to another
// offers the update to, and the failures to expect, from the evidence so
// far (or the gate's baseline, or a default).
func (pl *Planner) forecast(ctx context.Context, product string, from, to float64, gate *rollout.Gate, counts []store.HealthCount) (Forecast, error) {
	n, err := pl.cfg.Store.CountDevicesWithProduct(ctx, product)
	if err != nil {
		return Forecast{}, err
	}
	f := Forecast{AudienceDevices: n, CurrentPercent: from, NextPercent: to,
		NewlyExposed: max(0, int64(math.Ceil(float64(n)*(to-from)/100)))}
	in := make([]health.Count, len(counts))
	for i, hc := range counts {
		in[i] = health.Count{Wave: hc.Wave, Outcome: hc.Outcome, Cell: hc.Cell, Devices: hc.Devices}
	}
	rep := health.Summarize(in, 10)
	switch {
	case rep.Overall.Failure.Of >= 30:
		f.FailureRate = rep.Overall.Failure.Value
		f.FailureRateSource = fmt.Sprintf("observed in this deployment (%d of %d devices failed)", rep.Overall.Failure.Events, rep.Overall.Failure.Of)
	case gate != nil && gate.BaselineFailure > 0:
		f.FailureRate, f.FailureRateSource = gate.BaselineFailure, "the gate's declared baseline"
	default:
		f.FailureRate, f.FailureRateSource = defaultFailureRate, "default assumption (no evidence yet)"
	}
	for _, c := range rep.Cells {
		if rep.Overall.Failure.Of == 0 {
			break
		}
		f.Cohorts = append(f.Cohorts, CohortForecast{Cell: c.Cell, Share: float64(c.Failure.Of) / float64(rep.Overall.Failure.Of),
			FailureRate: c.Failure.Value})
	}
	f.ExpectedFailures = float64(f.NewlyExposed) * f.FailureRate
	scaleCohorts(&f)
	return f, nil
}

func scaleCohorts(f *Forecast) {
	for i := range f.Cohorts {
		c := &f.Cohorts[i]
		c.NewlyExposed = int64(math.Round(c.Share * float64(f.NewlyExposed)))
		c.ExpectedFailures = float64(c.NewlyExposed) * c.FailureRate
	}
}

// holdForecast counts the registry devices a hold blocks.
func (pl *Planner) holdForecast(ctx context.Context, h targeting.Hold) (Forecast, error) {
	rule, err := pl.cfg.Rules.Compile(h.Rule)
	if err != nil {
		return Forecast{}, err
	}
	devs, err := pl.cfg.Store.DevicesWithProduct(ctx, h.Product, maxForecastDevices)
	if err != nil {
		return Forecast{}, err
	}
	var held int64
	for _, d := range devs {
		if ok, err := rule.Match(&targeting.Device{ID: d.ID, Attributes: d.Attributes, Installed: d.Installed}); err == nil && ok {
			held++
		}
	}
	f := Forecast{AudienceDevices: int64(len(devs)), NewlyExposed: held, FailureRate: defaultFailureRate,
		FailureRateSource: "default assumption", Note: "devices in the registry the hold's rule matches; each is offered again if a deployment covers it"}
	f.ExpectedFailures = float64(held) * f.FailureRate
	return f, nil
}

func hashPlan(tokenID string, c Change, s state) (string, error) {
	b, err := json.Marshal(struct {
		Token  string `json:"token"`
		Change Change `json:"change"`
		State  state  `json:"state"`
	}{tokenID, c, s})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "plan_" + hex.EncodeToString(sum[:]), nil
}

// Plan makes a dry-run of a widening change for p.
func (pl *Planner) Plan(ctx context.Context, p access.Principal, c Change) (Plan, error) {
	out, err := pl.planWithoutSaving(ctx, p, c)
	if err != nil {
		return Plan{}, err
	}
	out.WithinBudget = out.Spent+out.Forecast.NewlyExposed <= out.Budget
	body, _ := json.Marshal(out.Change)
	return out, pl.cfg.Store.SavePlan(ctx, store.AgentPlan{Hash: out.Hash, TokenID: p.TokenID, Action: c.Action, Target: out.Target,
		Body: string(body), Exposure: out.Forecast.NewlyExposed, CreatedAt: pl.cfg.Now()})
}

// Apply carries out a plan p made earlier if nothing it depends on has
// changed: within p's budget at once, else as an approval request.
func (pl *Planner) Apply(ctx context.Context, p access.Principal, hash string) (Outcome, error) {
	saved, err := pl.cfg.Store.Plan(ctx, hash)
	if err != nil {
		return Outcome{}, err
	}
	if saved.TokenID != p.TokenID {
		return Outcome{}, fault.E(fault.Forbidden, "plan %s was made by another token", hash)
	}
	if saved.AppliedAt != nil {
		return Outcome{}, fault.E(fault.Conflict, "plan %s was already applied", hash)
	}
	plan, err := pl.recheck(ctx, p, saved)
	if err != nil {
		return Outcome{}, err
	}
	if !plan.WithinBudget {
		if a, err := pl.cfg.Store.ApprovalForPlan(ctx, hash); err == nil {
			return Outcome{Approval: &a, Plan: plan}, nil // asked already: the same request
		}
		id := catalog.NewID("apr", pl.cfg.Now())
		a, err := pl.cfg.Store.RequestApproval(ctx, store.Approval{ID: id, PlanHash: hash, TokenID: p.TokenID,
			Reason: fmt.Sprintf("%s would newly expose %d devices; budget %d per day, %d used", plan.Change.Action,
				plan.Forecast.NewlyExposed, plan.Budget, plan.Spent) + "; " + plan.Change.Reason}, p.Actor())
		if err != nil {
			return Outcome{}, err
		}
		a, err = pl.cfg.Store.Approval(ctx, a.ID)
		return Outcome{Approval: &a, Plan: plan}, err
	}
	res, err := pl.execute(ctx, plan.Change, p.Actor())
	if err != nil {
		return Outcome{}, err
	}
	if err := pl.markApplied(ctx, hash); err != nil {
		return Outcome{}, err
	}
	return Outcome{Applied: true, Result: res, Plan: plan}, nil
}

// recheck re-resolves a saved plan and refuses it if the state changed.
func (pl *Planner) recheck(ctx context.Context, p access.Principal, saved store.AgentPlan) (Plan, error) {
	var c Change
	if err := json.Unmarshal([]byte(saved.Body), &c); err != nil {
		return Plan{}, err
	}
	fresh, err := pl.planWithoutSaving(ctx, p, c)
	if err != nil {
		return Plan{}, fault.Wrap(err, fault.KindOf(err), "plan "+saved.Hash+" can no longer apply: "+fault.Message(err))
	}
	if fresh.Hash != saved.Hash {
		return Plan{}, fault.E(fault.Conflict, "plan %s is stale: %s changed since it was planned; plan again", saved.Hash, saved.Target)
	}
	fresh.Forecast.NewlyExposed = saved.Exposure
	fresh.WithinBudget = fresh.Spent+saved.Exposure <= fresh.Budget
	return fresh, nil
}

// mayPlan: people who may widen exposure, and agents (whose plans go
// through budgets and approvals).
func mayPlan(p access.Principal) error {
	if p.Role == access.RoleAgent {
		return nil
	}
	return p.Authorize(access.Widen)
}

// ForecastNextWave says what advancing a deployment would expose (a read:
// no plan is made).
func (pl *Planner) ForecastNextWave(ctx context.Context, p access.Principal, deploymentID string) (Forecast, error) {
	if err := p.Authorize(access.Read); err != nil {
		return Forecast{}, err
	}
	// A forecast changes nothing; the reason only lets the command be tried.
	_, _, f, err := pl.resolve(ctx, p, &Change{Action: Advance, DeploymentID: deploymentID, Reason: "forecast"})
	return f, err
}

func (pl *Planner) planWithoutSaving(ctx context.Context, p access.Principal, c Change) (Plan, error) {
	if err := mayPlan(p); err != nil {
		return Plan{}, err
	}
	target, st, f, err := pl.resolve(ctx, p, &c)
	if err != nil {
		return Plan{}, err
	}
	hash, err := hashPlan(p.TokenID, c, st)
	if err != nil {
		return Plan{}, err
	}
	spent, err := pl.cfg.Store.ExposureSpent(ctx, p.TokenID, target, pl.cfg.Now().Add(-24*time.Hour))
	if err != nil {
		return Plan{}, err
	}
	return Plan{Hash: hash, Change: c, Target: target, Forecast: f, Budget: p.Budget, Spent: spent}, nil
}

// execute carries out a change as actor and marks nothing (callers do).
func (pl *Planner) execute(ctx context.Context, c Change, actor string) (any, error) {
	var res any
	var err error
	switch c.Action {
	case Resume, Advance, Approve:
		res, err = pl.cfg.Controller.Command(ctx, c.DeploymentID, rollout.Command(c.Action), actor, c.Reason)
	case Promote:
		var waves []rollout.Wave
		if c.Plan != nil {
			waves = c.Plan.Waves
		}
		res, err = pl.cfg.Controller.Promote(ctx, c.DeploymentID, c.Ring, waves, actor, c.Reason)
		if err == nil {
			err = pl.cfg.Refresh(ctx)
		}
	case ReleaseHold:
		res, err = pl.cfg.Store.ReleaseHold(ctx, c.HoldID, actor, c.Reason)
		if err == nil {
			err = pl.cfg.Refresh(ctx)
		}
	case Deploy:
		v, verr := catalog.ValidateVersion("version", c.Version)
		if verr != nil {
			return nil, verr
		}
		u, uerr := pl.cfg.Store.UpdateByVersion(ctx, c.Product, v)
		if uerr != nil {
			return nil, uerr
		}
		res, _, err = pl.cfg.Controller.Deploy(ctx, u.ID, *c.Plan, actor)
	default:
		err = fault.Field("action", "unknown action %q", c.Action)
	}
	return res, err
}

// markApplied records a plan as applied, so its exposure counts against
// the budget and it cannot be applied again.
func (pl *Planner) markApplied(ctx context.Context, hash string) error {
	return pl.cfg.Store.MarkPlanApplied(ctx, hash)
}

// Decide lets a human (any token with the widen permission, other than the
// requester) approve or deny a request. An approved plan is applied at
// once, as the requesting agent's action, if it is still current.
func (pl *Planner) Decide(ctx context.Context, human access.Principal, id string, approve bool, reason string) (store.Approval, error) {
	if err := human.Authorize(access.Widen); err != nil {
		return store.Approval{}, err
	}
	if human.Role == access.RoleAgent {
		return store.Approval{}, fault.E(fault.Forbidden, "agents cannot approve requests; a person must")
	}
	a, err := pl.cfg.Store.Approval(ctx, id)
	if err != nil {
		return a, err
	}
	if a.TokenID == human.TokenID {
		return a, fault.E(fault.Forbidden, "a token cannot approve its own request")
	}
	saved, err := pl.cfg.Store.Plan(ctx, a.PlanHash)
	if err != nil {
		return a, err
	}
	if err := human.AuthorizeProduct(productOf(ctx, pl, saved)); err != nil {
		return a, err
	}
	to := "denied"
	if approve {
		to = "approved"
	}
	if a, err = pl.cfg.Store.DecideApproval(ctx, id, "pending", to, human.Actor(), reason, ""); err != nil || !approve {
		return a, err
	}
	var c Change
	if err := json.Unmarshal([]byte(saved.Body), &c); err != nil {
		return a, err
	}
	requester, err := pl.requester(ctx, a.TokenID)
	if err != nil {
		return a, err
	}
	status, result := "applied", ""
	if fresh, err := pl.planWithoutSaving(ctx, requester, c); err != nil || fresh.Hash != saved.Hash {
		status, result = "failed", "the plan is stale: the state changed after it was planned"
	} else if res, err := pl.execute(ctx, c, requester.Actor()+" approved by "+human.Actor()); err != nil {
		status, result = "failed", fault.Message(err)
	} else {
		b, _ := json.Marshal(res)
		result = string(b)
		if err := pl.markApplied(ctx, saved.Hash); err != nil {
			return a, err
		}
	}
	return pl.cfg.Store.DecideApproval(ctx, id, "approved", status, human.Actor(), reason, result)
}

func productOf(ctx context.Context, pl *Planner, p store.AgentPlan) string {
	var c Change
	_ = json.Unmarshal([]byte(p.Body), &c)
	switch {
	case c.Product != "":
		return c.Product
	case c.DeploymentID != "":
		if d, err := pl.cfg.Store.Deployment(ctx, c.DeploymentID); err == nil {
			return d.Product
		}
	case c.HoldID != "":
		if h, err := pl.cfg.Store.Hold(ctx, c.HoldID); err == nil {
			return h.Product
		}
	}
	return ""
}

// requester rebuilds the principal that filed a request (its token may
// have been revoked since: then nothing is applied).
func (pl *Planner) requester(ctx context.Context, tokenID string) (access.Principal, error) {
	t, err := pl.cfg.Store.TokenByID(ctx, tokenID)
	if err != nil {
		return access.Principal{}, err
	}
	if t.RevokedAt != nil || (t.ExpiresAt != nil && !pl.cfg.Now().Before(*t.ExpiresAt)) {
		return access.Principal{}, fault.E(fault.Conflict, "the requesting token is no longer valid")
	}
	return access.Principal{TokenID: t.ID, Name: t.Name, Role: t.Role, Products: t.Products, Budget: t.Budget}, nil
}
