// Package controller applies the rollout policy to stored deployments: it
// creates them, carries out operators' commands and, as a leader-elected
// periodic job, moves every live rollout forward. Each change commits
// together with its events in one transaction.
package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/telemetry"
	"github.com/ringmaster/ringmaster/internal/tracing"
)

// Controller moves deployments. Safe for concurrent use.
type Controller struct {
	store  *store.Store
	notify Notifier
	rules  *targeting.Env
	log    *slog.Logger
	now    func() time.Time
	tick   time.Duration
	// changed is called after a commit that may change what devices are
	// offered (to refresh the snapshot at once).
	changed func(ctx context.Context)

	mu sync.Mutex
	// scanned is when the gate last scanned each deployment's cohorts
	// against their own baselines (cohortScanEvery).
	scanned map[string]time.Time
	// verdicts is the gate's last verdict on each deployment this
	// controller ticked (for metrics).
	verdicts map[string]string
}

// Verdicts returns the health gate's last verdict on each deployment this
// controller judged while ticking (none on replicas that do not tick).
func (c *Controller) Verdicts() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.verdicts)
}

func (c *Controller) noteVerdict(id, verdict string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verdicts == nil {
		c.verdicts = map[string]string{}
	}
	c.verdicts[id] = verdict
}

// cohortScanEvery is how often the gate scans a deployment's cohort cells
// against the previous release's (every cell's counts are read).
const cohortScanEvery = 5 * time.Minute

// scanDue reports whether deployment id's cohorts are due a scan, marking
// it scanned when act (reads always scan).
func (c *Controller) scanDue(id string, now time.Time, act bool) bool {
	if !act {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scanned == nil {
		c.scanned = map[string]time.Time{}
	}
	if now.Sub(c.scanned[id]) < cohortScanEvery {
		return false
	}
	c.scanned[id] = now
	return true
}

// Notifier enqueues alerts in a transaction.
type Notifier interface {
	Enqueue(ctx context.Context, tx *store.Tx, a alerts.Alert) error
}

// New returns a controller ticking every tick, raising alerts through notify.
func New(s *store.Store, rules *targeting.Env, notify Notifier, log *slog.Logger, now func() time.Time, tick time.Duration, changed func(context.Context)) *Controller {
	return &Controller{store: s, notify: notify, rules: rules, log: log, now: now, tick: tick, changed: changed}
}

// alertsFor turns a deployment's actions into alerts, enqueued in tx.
func (c *Controller) alertsFor(ctx context.Context, tx *store.Tx, d *rollout.Deployment, actor string, acts []rollout.Action) error {
	for _, a := range acts {
		var kinds []string
		switch a.Kind {
		case "gate_paused":
			kinds = []string{alerts.GateRegressed, alerts.DeploymentPaused}
		case "paused":
			kinds = []string{alerts.DeploymentPaused}
		case "halted":
			kinds = []string{alerts.DeploymentHalted}
		}
		who := actor
		if a.By != "" {
			who = a.By
		}
		for _, k := range kinds {
			summary := fmt.Sprintf("%s %s %s in wave %d at %g%%: %s", d.Product, d.Version, a.Kind, a.Wave+1, a.Percent, a.Detail)
			if err := c.notify.Enqueue(ctx, tx, alerts.Alert{Kind: k, DeploymentID: d.ID, Product: d.Product, Version: d.Version,
				Actor: who, Summary: summary}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Deploy creates a deployment of a published update with plan, starting
// its first wave at once when the plan allows. Deploying an update again
// with the same plan returns the live deployment (created false).
func (c *Controller) Deploy(ctx context.Context, updateID string, plan rollout.Plan, actor string) (rollout.Deployment, bool, error) {
	if plan.Rollback != nil {
		return rollout.Deployment{}, false, fault.Field("plan.rollback", "a rollback is made by rolling the bad deployment back (POST /v1/deployments/{id}/rollback), not declared in a plan")
	}
	return c.deploy(ctx, updateID, plan, actor)
}

func (c *Controller) deploy(ctx context.Context, updateID string, plan rollout.Plan, actor string) (rollout.Deployment, bool, error) {
	if err := plan.Validate(); err != nil {
		return rollout.Deployment{}, false, err
	}
	if _, err := c.rules.Compile(plan.Audience); err != nil {
		return rollout.Deployment{}, false, fault.Wrap(err, fault.Invalid, "audience: "+fault.Message(err))
	}
	if plan.Ring != "" {
		if _, err := c.store.Ring(ctx, plan.Ring); err != nil {
			return rollout.Deployment{}, false, err
		}
	}
	if plan.Order == rollout.OrderRisk {
		if err := c.pinRiskModel(ctx, updateID, &plan); err != nil {
			return rollout.Deployment{}, false, err
		}
	}
	now := c.now()
	id := catalog.NewID("dep", now)
	d := rollout.Deployment{ID: id, UpdateID: updateID, Plan: plan, Status: rollout.Initial(), Salt: id, CreatedBy: actor}
	var acts []rollout.Action
	d.Status, acts = rollout.Step(plan, d.Status, rollout.Observations{}, now)
	d, created, err := c.store.InsertDeployment(ctx, d, acts, actor)
	if err == nil && created {
		c.changed(ctx)
	}
	return d, created, err
}

// pinRiskModel pins a risk-ordered plan to the product's newest risk model
// (or checks the one it names is the product's).
func (c *Controller) pinRiskModel(ctx context.Context, updateID string, plan *rollout.Plan) error {
	u, err := c.store.Update(ctx, updateID)
	if err != nil {
		return err
	}
	var m store.RiskModel
	if plan.RiskModel == "" {
		m, err = c.store.LatestRiskModel(ctx, u.Product)
	} else {
		m, err = c.store.RiskModelByID(ctx, plan.RiskModel)
	}
	switch {
	case fault.Is(err, fault.NotFound):
		return fault.Field("order", "a risk-ordered rollout needs a risk model of %s: %s", u.Product, fault.Message(err))
	case err != nil:
		return err
	case m.Product != u.Product:
		return fault.Field("risk_model", "risk model %s is of product %s, not %s", m.ID, m.Product, u.Product)
	case len(m.Model.Quantiles) < 2:
		return fault.Field("risk_model", "risk model %s was not calibrated on a population", m.ID)
	}
	plan.RiskModel = m.ID
	return nil
}

// CancelUpdate cancels every live deployment of an update (one withdrawn,
// say), with the caller as actor and the reason; one that ended meanwhile
// is left as it is.
func (c *Controller) CancelUpdate(ctx context.Context, updateID, product, actor, reason string) error {
	live, err := c.store.Deployments(ctx, store.DeploymentFilter{Product: product,
		States: []rollout.State{rollout.Scheduled, rollout.Running, rollout.Paused}})
	if err != nil {
		return err
	}
	for _, d := range live {
		if d.UpdateID != updateID {
			continue
		}
		if _, err := c.Command(ctx, d.ID, rollout.Cancel, actor, reason); err != nil && !fault.Is(err, fault.Conflict) {
			return err
		}
	}
	return nil
}

// Command carries out an operator's command (pause, resume, halt, cancel,
// approve, advance) and records it with actor and reason. An approval takes
// effect at once (the approved wave starts if it was waiting).
func (c *Controller) Command(ctx context.Context, id string, cmd rollout.Command, actor, reason string) (rollout.Deployment, error) {
	var acts []rollout.Action
	var dep *rollout.Deployment
	d, err := c.store.MutateDeployment(ctx, id, actor, func(d *rollout.Deployment) ([]rollout.Action, error) {
		now := c.now()
		st, act, err := rollout.Apply(d.Plan, d.Status, cmd, actor, reason, now)
		if err != nil {
			return nil, err
		}
		acts = []rollout.Action{act}
		if cmd == rollout.Approve || cmd == rollout.Resume {
			var more []rollout.Action
			st, more = rollout.Step(d.Plan, st, c.observe(ctx, d), now)
			acts = append(acts, more...)
		}
		d.Status, dep = st, d
		return acts, nil
	}, func(tx *store.Tx) error { return c.alertsFor(ctx, tx, dep, actor, acts) })
	if err == nil {
		c.changed(ctx)
	}
	return d, err
}

// Tick applies Step to every scheduled or running deployment at now. A
// failure on one deployment is logged and does not stop the others.
func (c *Controller) Tick(ctx context.Context, now time.Time) (err error) {
	ctx, span := tracing.Start(ctx, "controller.tick")
	defer func() { tracing.End(span, err) }()
	deps, err := c.store.Deployments(ctx, store.DeploymentFilter{States: []rollout.State{rollout.Scheduled, rollout.Running, rollout.Completed}})
	if err != nil {
		return err
	}
	moved := false
	for _, d := range deps {
		if d.State == rollout.Completed && !rollout.Watched(d.Plan, d.Status, now) {
			continue
		}
		obs := c.observe(ctx, &d)
		before := d.Status
		// Most ticks change nothing: decide on the listed row first, and
		// open a transaction (which decides again under the row lock) only
		// when the status would move.
		if next, acts := rollout.Step(d.Plan, d.Status, obs, now); next == before && len(acts) == 0 {
			continue
		}
		var acts []rollout.Action
		var dep *rollout.Deployment
		after, err := c.store.MutateDeployment(ctx, d.ID, rollout.ControllerActor, func(d *rollout.Deployment) ([]rollout.Action, error) {
			d.Status, acts = rollout.Step(d.Plan, d.Status, obs, now)
			dep = d
			return acts, nil
		}, func(tx *store.Tx) error { return c.alertsFor(ctx, tx, dep, rollout.ControllerActor, acts) })
		if err != nil {
			c.log.Warn("rollout step failed", "deployment", d.ID, "err", err)
			continue
		}
		if after.Status != before {
			moved = true
			c.log.Info("rollout moved", "deployment", d.ID, "state", after.State, "wave", after.Wave+1, "percent", after.Percent)
		}
	}
	if moved {
		c.changed(ctx)
	}
	return nil
}

// observe gathers what Step needs: the audience estimate for paced waves
// (registered devices of the product) and the gate's verdict on the
// current wave for gated plans.
func (c *Controller) observe(ctx context.Context, d *rollout.Deployment) rollout.Observations {
	var obs rollout.Observations
	paced := false
	for _, w := range d.Plan.Waves {
		paced = paced || w.DevicesPerPeriod > 0
	}
	if paced {
		n, err := c.store.CountDevicesWithProduct(ctx, d.Product)
		if err != nil {
			c.log.Warn("audience estimate failed", "deployment", d.ID, "err", err)
		}
		obs.AudienceSize = n
	}
	if rollout.Watched(d.Plan, d.Status, c.now()) {
		gctx, span := tracing.Start(ctx, "gate.judge", attribute.String("deployment.id", d.ID), attribute.Int("wave", d.Status.Wave+1))
		g, err := c.Gate(gctx, d, true)
		span.SetAttributes(attribute.String("gate.verdict", string(g.Verdict)))
		tracing.End(span, err)
		if err != nil {
			c.log.Warn("health gate failed; the wave waits", "deployment", d.ID, "err", err)
			return obs
		}
		obs.Gate = &rollout.GateObservation{Verdict: string(g.Verdict), Summary: g.Summary}
		c.noteVerdict(d.ID, obs.Gate.Verdict)
	}
	return obs
}

// Default baselines when neither the plan nor a previous release gives one.
var defaultBaseline = health.Baseline{Failure: 0.02, Rollback: 0.01, Crash: 0.01, Source: "default"}

// ambient is the fleet's other installs (every other deployment's) the
// gate compares the release with, on the devices of cell (nil: all):
// during the rollout, matched hour by hour with the release's own
// installs (health.TimeMatched; for a cell, health.CellTimeMatched, which
// widens the match for a sparse cell), and the week before it started.
func (c *Controller) ambient(ctx context.Context, d *rollout.Deployment, cell map[string]string, now time.Time) (during, before health.Rate, err error) {
	release, err := c.store.HourlyInstalls(ctx, d.ID, false, cell, d.CreatedAt, now)
	if err != nil {
		return during, before, err
	}
	// From a few hours before the start: the first installs' hours match
	// those around them.
	lead, match := ambientLead, health.TimeMatched
	if cell != nil {
		lead, match = time.Duration(slices.Max(health.CellSpans))*time.Hour, health.CellTimeMatched
	}
	others, err := c.store.HourlyInstalls(ctx, d.ID, true, cell, d.CreatedAt.Add(-lead), now)
	if err != nil {
		return during, before, err
	}
	weekBefore, err := c.store.HourlyInstalls(ctx, d.ID, true, cell, d.CreatedAt.Add(-7*24*time.Hour), d.CreatedAt)
	if err != nil {
		return during, before, err
	}
	// Whole hours before the one it started in.
	return match(release, others), weekBefore.Rate(math.MinInt64, health.HourOf(d.CreatedAt)), nil
}

// ambientLead is how long before a deployment started the other installs
// its first installs are matched with may have happened.
const ambientLead = 6 * time.Hour

// plannedSize estimates how many devices a wave reaches: its share of the
// devices that have the product.
func (c *Controller) plannedSize(ctx context.Context, d *rollout.Deployment, wave int) (int64, error) {
	audience, err := c.store.CountDevicesWithProduct(ctx, d.Product)
	if err != nil {
		return 0, err
	}
	return int64(float64(audience) * d.Plan.WaveShare(wave) / 100), nil
}

// minBaselineReports is how many finished devices a previous release needs
// to serve as a baseline.
const minBaselineReports = 200

// Gate evaluates the health gate on the deployment's current wave. With
// act, a regression localized to a cohort creates the plan's automatic
// hold; without, Gate only reports (for reads).
func (c *Controller) Gate(ctx context.Context, d *rollout.Deployment, act bool) (health.GateResult, error) {
	g := d.Plan.Gate
	if g == nil {
		g = &rollout.Gate{}
	}
	base := defaultBaseline
	prevID := ""
	if prev, devs, err := c.store.PreviousRelease(ctx, d.Product, d.ID, minBaselineReports); err == nil {
		prevID = prev.ID
		ok := devs["install_succeeded"]
		failed := devs["install_failed"] + devs["download_failed"]
		base = health.Baseline{Failure: health.NewRate(failed, ok+failed).Value, Rollback: health.NewRate(devs["rolled_back"], ok).Value,
			Crash: health.NewRate(devs["post_install_crash"], ok).Value, Source: "previous release " + prev.Version + " (" + prev.ID + ")"}
	} else if !fault.Is(err, fault.NotFound) {
		return health.GateResult{}, err
	}
	base = DeclaredBaseline(g, base)
	now := c.now()
	during, before, err := c.ambient(ctx, d, nil, now)
	if err != nil {
		return health.GateResult{}, err
	}
	base, _ = health.AdjustForAmbient(base, during, before)
	wave := max(d.Wave, 0)
	planned, err := c.plannedSize(ctx, d, wave)
	if err != nil {
		return health.GateResult{}, err
	}
	// One read of the counts: the whole rollout, the current wave and the
	// cohort cells must agree, or a cell counted after the overall (under
	// slow aggregation) looks larger than its share and is not localized.
	counts, err := c.store.HealthCounts(ctx, d.ID, false)
	if err != nil {
		return health.GateResult{}, err
	}
	all, current := map[string]int64{}, map[string]int64{}
	byCell, waveCell := map[string]map[string]int64{}, map[string]map[string]int64{}
	for _, hc := range counts {
		if hc.Outcome == telemetry.Offered {
			continue // exposure is the server's record below, not what devices say
		}
		if hc.Cell == "" {
			all[string(hc.Outcome)] += hc.Devices
			if hc.Wave == wave {
				current[string(hc.Outcome)] += hc.Devices
			}
		}
		if byCell[hc.Cell] == nil {
			byCell[hc.Cell], waveCell[hc.Cell] = map[string]int64{}, map[string]int64{}
		}
		byCell[hc.Cell][string(hc.Outcome)] += hc.Devices
		if hc.Wave == wave {
			waveCell[hc.Cell][string(hc.Outcome)] += hc.Devices
		}
	}
	// Exposure: the devices the server offered the update to.
	offers, err := c.store.OfferCounts(ctx, d.ID)
	if err != nil {
		return health.GateResult{}, err
	}
	for w, n := range offers {
		all[string(telemetry.Offered)] += n
		if w == wave {
			current[string(telemetry.Offered)] += n
		}
	}
	ev := Evidence{Wave: wave, Planned: planned, All: all, Current: current,
		AmbientCell: func(cell string) (health.Rate, health.Rate, error) {
			return c.ambient(ctx, d, telemetry.ParseCell(cell), now)
		}, Cells: func() ([]health.CellDevices, map[string]map[string]int64, error) {
			cells := make([]health.CellDevices, 0, len(byCell))
			for cell, devs := range byCell {
				cells = append(cells, health.CellDevices{Cell: cell, Devices: devs})
			}
			return cells, waveCell, nil
		}}
	if prevID != "" && g.AutoHold != "" && c.scanDue(d.ID, now, act) {
		counts, err := c.store.HealthCounts(ctx, prevID, false)
		if err != nil {
			return health.GateResult{}, err
		}
		ev.PriorCells = priorCells(counts)
	}
	if d.Plan.Order == rollout.OrderRisk && d.Plan.RiskModel != "" {
		m, err := c.store.RiskModelByID(ctx, d.Plan.RiskModel)
		if err != nil {
			return health.GateResult{}, err
		}
		ev.RiskAll, ev.RiskCurrent = relativeRisk(all, m.Model.Mean), relativeRisk(current, m.Model.Mean)
	}
	return Judge(g, base, ev, func(rule, evidence string) (HoldState, string, error) {
		h, err := c.autoHold(ctx, d, rule, evidence, act)
		switch {
		case err != nil || h.ID == "":
			return NoHold, "", err
		case h.Status == targeting.HoldReleased:
			return HoldWasReleased, h.ID, nil
		case h.Status == targeting.HoldProposed:
			return HoldIsProposed, h.ID, nil
		}
		return HoldIsActive, h.ID, nil
	})
}

// priorCells sums a previous release's health counts per cohort cell over
// its waves.
func priorCells(counts []store.HealthCount) []health.CellDevices {
	byCell := map[string]map[string]int64{}
	for _, hc := range counts {
		if hc.Cell == "" {
			continue
		}
		if byCell[hc.Cell] == nil {
			byCell[hc.Cell] = map[string]int64{}
		}
		byCell[hc.Cell][string(hc.Outcome)] += hc.Devices
	}
	out := make([]health.CellDevices, 0, len(byCell))
	for cell, devs := range byCell {
		out = append(out, health.CellDevices{Cell: cell, Devices: devs})
	}
	return out
}

// relativeRisk is the mean predicted risk of the devices that finished
// installing (summed in millionths under health.PredictedRisk) relative
// to the population's mean; 0 when unknown.
func relativeRisk(devices map[string]int64, population float64) float64 {
	n := devices["install_succeeded"] + devices["install_failed"] + devices["download_failed"]
	if n == 0 || population <= 0 {
		return 0
	}
	return float64(devices[string(health.PredictedRisk)]) / 1e6 / float64(n) / population
}

// DeclaredBaseline overlays a plan gate's declared baseline rates on base.
func DeclaredBaseline(g *rollout.Gate, base health.Baseline) health.Baseline {
	declared := false
	for _, x := range []struct {
		v   float64
		dst *float64
	}{{g.BaselineFailure, &base.Failure}, {g.BaselineRollback, &base.Rollback}, {g.BaselineCrash, &base.Crash}} {
		if x.v > 0 {
			*x.dst, declared = x.v, true
		}
	}
	if declared {
		base.Source = "declared (" + base.Source + " for the rest)"
	}
	return base
}

// autoHold returns the deployment's automatic hold with this rule,
// creating it (active or proposed, per the plan) when act.
func (c *Controller) autoHold(ctx context.Context, d *rollout.Deployment, rule, evidence string, act bool) (targeting.Hold, error) {
	holds, err := c.store.AutomaticHolds(ctx, d.ID)
	if err != nil {
		return targeting.Hold{}, err
	}
	for _, h := range holds {
		if h.Rule == rule {
			return h, nil
		}
	}
	if !act {
		return targeting.Hold{}, nil
	}
	if _, err := c.rules.Compile(rule); err != nil {
		return targeting.Hold{}, fmt.Errorf("cohort rule %q: %w", rule, err)
	}
	status := targeting.HoldActive
	if d.Plan.Gate.AutoHold == "proposed" {
		status = targeting.HoldProposed
	}
	kind := alerts.HoldCreated
	if status == targeting.HoldProposed {
		kind = alerts.HoldProposed
	}
	h, err := c.store.CreateHold(ctx, targeting.Hold{ID: catalog.NewID("hld", c.now()), Product: d.Product, UpdateID: d.UpdateID,
		Rule: rule, Reason: evidence, Source: targeting.HoldAutomatic, Status: status, DeploymentID: d.ID, CreatedBy: rollout.GateActor},
		func(tx *store.Tx, h targeting.Hold) error {
			return c.notify.Enqueue(ctx, tx, alerts.Alert{Kind: kind, DeploymentID: d.ID, HoldID: h.ID, Product: d.Product,
				Version: d.Version, Actor: rollout.GateActor, Summary: fmt.Sprintf("%s hold %s on %s: %s", h.Status, h.ID, rule, evidence)})
		})
	if err != nil {
		return h, err
	}
	c.log.Warn("automatic safeguard hold", "hold", h.ID, "deployment", d.ID, "rule", rule, "status", status, "evidence", evidence)
	c.changed(ctx)
	return h, nil
}

// TickArgs is the periodic job that moves rollouts.
type TickArgs struct{}

func (TickArgs) Kind() string { return "rollout_tick" }

type tickWorker struct {
	river.WorkerDefaults[TickArgs]
	c *Controller
}

func (w *tickWorker) Work(ctx context.Context, _ *river.Job[TickArgs]) error {
	return w.c.Tick(ctx, w.c.now())
}

func (w *tickWorker) Timeout(*river.Job[TickArgs]) time.Duration { return time.Minute }

// Register adds the controller's worker.
func (c *Controller) Register(w *river.Workers) { river.AddWorker(w, &tickWorker{c: c}) }

// PeriodicJobs returns the controller's periodic job: a tick every interval,
// enqueued by the leader only.
func (c *Controller) PeriodicJobs() []*river.PeriodicJob {
	// Ticks are unique per period: a replica that becomes leader mid-period
	// does not tick twice, and a tick killed with its process blocks only
	// its own period (River's uniqueness always covers running jobs).
	// Overlapping ticks are safe: each transition is computed from the
	// deployment row read under its lock.
	opts := &river.InsertOpts{MaxAttempts: 1, UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: c.tick}}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(c.tick),
		func() (river.JobArgs, *river.InsertOpts) { return TickArgs{}, opts },
		&river.PeriodicJobOpts{RunOnStart: true, ID: "rollout_tick"})}
}
