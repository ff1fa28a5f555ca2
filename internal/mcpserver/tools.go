package mcpserver

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/agent"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// Inputs and outputs. Field descriptions are written for a model.

type searchIn struct {
	Query string `json:"query,omitempty" jsonschema:"only items whose name or title contains this text (case-insensitive)"`
}

type productsOut struct {
	Products []catalog.Product `json:"products"`
}

type updatesIn struct {
	Product string `json:"product,omitempty" jsonschema:"only this product"`
	State   string `json:"state,omitempty" jsonschema:"only this state: awaiting_upload, publishing, published or failed"`
	Limit   int    `json:"limit,omitempty" jsonschema:"at most this many (default 50, at most 500)"`
}

type updatesOut struct {
	Updates []catalog.Update `json:"updates"`
}

type deploymentsIn struct {
	Product string `json:"product,omitempty" jsonschema:"only this product"`
	State   string `json:"state,omitempty" jsonschema:"only this state: scheduled, running, paused, completed, halted or cancelled"`
	Limit   int    `json:"limit,omitempty" jsonschema:"at most this many, newest first (default 50, at most 500)"`
}

type deploymentsOut struct {
	Deployments []controller.DeploymentSummary `json:"deployments"`
}

type holdsIn struct {
	Product string `json:"product,omitempty" jsonschema:"only this product"`
	Status  string `json:"status,omitempty" jsonschema:"only this status: proposed, active or released"`
}

type holdsOut struct {
	Holds []targeting.Hold `json:"holds"`
}

type deploymentIn struct {
	DeploymentID string `json:"deployment_id" jsonschema:"the deployment (dep_…)"`
}

// statusOut is a deployment's health report. Gate is the health gate's
// verdict with its numbers (absent without a gate); its schema is left
// open because a gate result can nest the cohort it localized.
type statusOut struct {
	Deployment controller.DeploymentSummary `json:"deployment"`
	Offered    int64                        `json:"offered" jsonschema:"devices the server offered the update to (its own records)"`
	Health     health.Report                `json:"health"`
	Gate       any                          `json:"gate,omitempty" jsonschema:"the gate's verdict (healthy, inconclusive, regressed), tests with observed rates, thresholds and baseline, completeness"`
}

type cohortsIn struct {
	DeploymentID string `json:"deployment_id" jsonschema:"the deployment (dep_…)"`
	Limit        int    `json:"limit,omitempty" jsonschema:"at most this many cohorts, most failures first (default 20, at most 200)"`
}

type cohortsOut struct {
	Overall health.Rates        `json:"overall"`
	Cohorts []health.CellHealth `json:"cohorts"`
}

type explainIn struct {
	DeviceID string `json:"device_id" jsonschema:"the device, as the registry knows it"`
	UpdateID string `json:"update_id,omitempty" jsonschema:"only this update (upd_…)"`
}

type explainOut struct {
	DeviceID   string              `json:"device_id"`
	Attributes map[string]string   `json:"attributes"`
	Installed  map[string]string   `json:"installed"`
	Decisions  []delivery.Decision `json:"decisions"`
}

type auditIn struct {
	Actor  string `json:"actor,omitempty" jsonschema:"only this actor; a trailing * matches a prefix"`
	Action string `json:"action,omitempty" jsonschema:"only this action (deployment.paused), or a prefix with * (deployment.*)"`
	Target string `json:"target,omitempty" jsonschema:"only this target (a deployment, hold, update or token id)"`
	Limit  int    `json:"limit,omitempty" jsonschema:"at most this many, newest first (default 20, at most 200)"`
}

type auditEntry struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Reason string    `json:"reason,omitempty"`
}

type auditOut struct {
	Entries []auditEntry `json:"entries"`
}

type commandIn struct {
	DeploymentID string `json:"deployment_id" jsonschema:"the deployment (dep_…)"`
	Reason       string `json:"reason" jsonschema:"why, with the evidence (recorded in the audit log and shown to people)"`
}

type holdIn struct {
	Product string `json:"product" jsonschema:"the product"`
	Version string `json:"version,omitempty" jsonschema:"only this version (default: every update of the product)"`
	Rule    string `json:"rule" jsonschema:"CEL rule matching the devices to hold, e.g. device.attributes[\"oem\"] == \"contoso\""`
	Reason  string `json:"reason" jsonschema:"why, with the evidence"`
}

type applyIn struct {
	PlanHash string `json:"plan_hash" jsonschema:"the plan_hash plan_change returned"`
}

type approvalIn struct {
	ApprovalID  string `json:"approval_id" jsonschema:"the approval request (apr_…)"`
	WaitSeconds int    `json:"wait_seconds,omitempty" jsonschema:"wait up to this long (at most 60) for a person to decide"`
}

type withdrawIn struct {
	UpdateID string `json:"update_id" jsonschema:"the update to withdraw (upd_…)"`
	Reason   string `json:"reason" jsonschema:"why, with the evidence; recorded in the audit log"`
}

type rollbackIn struct {
	DeploymentID string `json:"deployment_id" jsonschema:"the bad deployment (dep_…)"`
	To           string `json:"to" jsonschema:"the earlier published version to offer to the devices that installed the bad one"`
	Reason       string `json:"reason" jsonschema:"why, with the evidence; recorded in the audit log and told to devices"`
}

func (s *Server) tools() {
	tool(s, "list_products", "List the products (software that devices run), optionally filtered by text.", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in searchIn) (productsOut, error) {
			ps, err := s.cfg.Store.Products(ctx)
			ps = visible(p, ps, func(x catalog.Product) string { return x.Name })
			if q := strings.ToLower(in.Query); q != "" {
				ps = slices.DeleteFunc(ps, func(x catalog.Product) bool {
					return !strings.Contains(strings.ToLower(x.Name+" "+x.Title), q)
				})
			}
			return productsOut{Products: ps}, err
		})
	tool(s, "list_updates", "List updates (published versions of products), oldest first.", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in updatesIn) (updatesOut, error) {
			f := store.UpdateFilter{Product: in.Product, State: catalog.UpdateState(in.State), Limit: limit(in.Limit, 50, 500)}
			if f.Product != "" {
				if err := p.AuthorizeProduct(f.Product); err != nil {
					return updatesOut{}, err
				}
			}
			f.Products = p.Products
			us, err := s.cfg.Store.Updates(ctx, f)
			return updatesOut{Updates: us}, err
		})
	tool(s, "list_deployments", "List deployments (rollouts of updates), newest first, with state, wave and exposure.", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in deploymentsIn) (deploymentsOut, error) {
			f := store.DeploymentFilter{Product: in.Product, Products: p.Products, Limit: limit(in.Limit, 50, 500)}
			if in.State != "" {
				f.States = []rollout.State{rollout.State(in.State)}
			}
			if f.Product != "" {
				if err := p.AuthorizeProduct(f.Product); err != nil {
					return deploymentsOut{}, err
				}
			}
			ds, err := s.cfg.Store.Deployments(ctx, f)
			out := deploymentsOut{Deployments: []controller.DeploymentSummary{}}
			for _, d := range ds {
				out.Deployments = append(out.Deployments, controller.Summarize(d))
			}
			return out, err
		})
	tool(s, "list_holds", "List safeguard holds (rules that keep an update from matching devices).", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in holdsIn) (holdsOut, error) {
			hs, err := s.cfg.Store.Holds(ctx, in.Product, targeting.HoldStatus(in.Status))
			return holdsOut{Holds: visible(p, hs, func(h targeting.Hold) string { return h.Product })}, err
		})
	tool(s, "deployment_status", "A deployment's state and health: rates per wave with 95% intervals, and the health gate's verdict "+
		"(healthy, inconclusive or regressed) with its numbers: observed rates against the baseline, test statistics, completeness.",
		access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in deploymentIn) (statusOut, error) {
			d, err := s.deployment(ctx, p, in.DeploymentID)
			if err != nil {
				return statusOut{}, err
			}
			rep, err := s.cfg.Controller.Report(ctx, d, 10)
			out := statusOut{Deployment: rep.Deployment, Offered: rep.Offered, Health: rep.Health}
			if rep.Gate != nil {
				out.Gate = rep.Gate
			}
			return out, err
		})
	tool(s, "cohort_health", "Per-cohort health of a deployment (cohorts are device attribute values and pairs, e.g. oem=contoso), "+
		"most failures first, to find a regression confined to some devices.", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in cohortsIn) (cohortsOut, error) {
			d, err := s.deployment(ctx, p, in.DeploymentID)
			if err != nil {
				return cohortsOut{}, err
			}
			rep, err := s.cfg.Controller.Report(ctx, d, limit(in.Limit, 20, 200))
			return cohortsOut{Overall: rep.Health.Overall, Cohorts: rep.Health.Cells}, err
		})
	tool(s, "explain_device", "Why a device is or is not offered each update: every check (version, applicability, deployment state, "+
		"ring, audience, wave bucket, holds, windows) with its outcome; failed_steps lists every reason it is not offered "+
		"(a held device outside the current wave shows both wave and hold).", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in explainIn) (explainOut, error) {
			dev, err := s.cfg.Store.Device(ctx, in.DeviceID)
			if err != nil {
				return explainOut{}, err
			}
			c, err := delivery.FromParts(dev.ID, dev.Attributes, dev.Installed)
			if err != nil {
				return explainOut{}, err
			}
			ds := s.cfg.Snapshots.Snapshot().Explain(c, in.UpdateID, s.cfg.Now())
			return explainOut{DeviceID: dev.ID, Attributes: dev.Attributes, Installed: dev.Installed,
				Decisions: visible(p, ds, func(d delivery.Decision) string { return d.Product })}, nil
		})
	tool(s, "recent_audit", "Recent entries of the tamper-evident audit log: who changed what, when and why.", access.AuditRead, readOnly,
		func(ctx context.Context, p access.Principal, in auditIn) (auditOut, error) {
			if err := p.AuthorizeUnscoped("the audit log"); err != nil {
				return auditOut{}, err
			}
			for _, f := range []string{in.Actor, in.Action, in.Target} {
				if len(f) > 300 {
					return auditOut{}, fault.Field("filter", "filters are at most 300 characters")
				}
			}
			es, err := s.cfg.Store.AuditEntries(ctx, store.AuditFilter{Actor: in.Actor, Action: in.Action, Target: in.Target, Limit: limit(in.Limit, 20, 200)})
			out := auditOut{Entries: []auditEntry{}}
			for _, e := range es {
				out.Entries = append(out.Entries, auditEntry{Seq: e.Seq, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Reason: e.Reason})
			}
			return out, err
		})
	tool(s, "forecast_next_wave", "What advancing a deployment to its next wave would expose: devices newly offered the update, the "+
		"failure rate assumed (and where it comes from), expected failures, and the cohorts they would fall in.", access.Read, readOnly,
		func(ctx context.Context, p access.Principal, in deploymentIn) (agent.Forecast, error) {
			if _, err := s.deployment(ctx, p, in.DeploymentID); err != nil {
				return agent.Forecast{}, err
			}
			return s.cfg.Planner.ForecastNextWave(ctx, p, in.DeploymentID)
		})
	for _, c := range []struct {
		cmd  rollout.Command
		desc string
	}{
		{rollout.Pause, "Pause a deployment at once: no more devices are offered the update until it is resumed. Use it as soon as health looks wrong."},
		{rollout.Halt, "Halt a deployment at once and for good: no device is offered it any more. For severe regressions."},
		{rollout.Cancel, "Cancel a deployment at once (stop offering it; it cannot be resumed)."},
	} {
		tool(s, string(c.cmd)+"_deployment", c.desc, access.Reduce, reduces,
			func(ctx context.Context, p access.Principal, in commandIn) (controller.DeploymentSummary, error) {
				if _, err := s.deployment(ctx, p, in.DeploymentID); err != nil {
					return controller.DeploymentSummary{}, err
				}
				if in.Reason == "" {
					return controller.DeploymentSummary{}, fault.Field("reason", "say why, with the evidence")
				}
				if err := catalog.ValidateReason("reason", in.Reason); err != nil {
					return controller.DeploymentSummary{}, err
				}
				d, err := s.cfg.Controller.Command(ctx, in.DeploymentID, c.cmd, p.Actor(), in.Reason)
				return controller.Summarize(d), err
			})
	}
	tool(s, "withdraw_update", "Withdraw a published update at once and for good: no device is offered it any more, its payloads leave the "+
		"signed TUF targets, and its live deployments are cancelled. Devices that installed it keep it. For a release that must not "+
		"spread any further, whatever its deployments.", access.Reduce, reduces,
		func(ctx context.Context, p access.Principal, in withdrawIn) (catalog.Update, error) {
			if err := catalog.ValidateID("update_id", "upd", in.UpdateID); err != nil {
				return catalog.Update{}, err
			}
			u, err := s.cfg.Store.Update(ctx, in.UpdateID)
			if err == nil {
				err = p.AuthorizeProduct(u.Product)
			}
			if err == nil && in.Reason == "" {
				err = fault.Field("reason", "say why, with the evidence")
			}
			if err == nil {
				err = catalog.ValidateReason("reason", in.Reason)
			}
			if err != nil {
				return catalog.Update{}, err
			}
			return s.cfg.Withdraw(ctx, in.UpdateID, p.Actor(), in.Reason)
		})
	tool(s, "rollback_deployment", "Roll a bad deployment back: halt it (if it still runs) and offer an earlier published version, in the same "+
		"waves and under the same health gate, only to the devices that installed the bad version; they accept the older version "+
		"because the offer is marked as a rollback. deployment_status's proposed_rollback names the version to use.", access.Reduce, reduces,
		func(ctx context.Context, p access.Principal, in rollbackIn) (controller.DeploymentSummary, error) {
			if err := catalog.ValidateID("deployment_id", "dep", in.DeploymentID); err != nil {
				return controller.DeploymentSummary{}, err
			}
			bad, err := s.cfg.Store.Deployment(ctx, in.DeploymentID)
			if err == nil {
				err = p.AuthorizeProduct(bad.Product)
			}
			if err != nil {
				return controller.DeploymentSummary{}, err
			}
			d, _, err := s.cfg.Controller.Rollback(ctx, in.DeploymentID, in.To, nil, p.Actor(), in.Reason)
			if err == nil {
				err = s.cfg.Refresh(ctx)
			}
			return controller.Summarize(d), err
		})
	tool(s, "create_hold", "Hold an update for the devices a CEL rule matches, at once (a safeguard hold): for a regression confined to a cohort, "+
		"so the rollout continues for everyone else.", access.Reduce, reduces,
		func(ctx context.Context, p access.Principal, in holdIn) (targeting.Hold, error) {
			if err := catalog.ValidateProductName("product", in.Product); err != nil {
				return targeting.Hold{}, err
			}
			if err := p.AuthorizeProduct(in.Product); err != nil {
				return targeting.Hold{}, err
			}
			if in.Rule == "" || in.Reason == "" {
				return targeting.Hold{}, fault.Field("rule", "a hold needs a rule and a reason")
			}
			if _, err := s.cfg.Rules.Compile(in.Rule); err != nil {
				return targeting.Hold{}, fault.Field("rule", "%s", fault.Message(err))
			}
			if err := catalog.ValidateReason("reason", in.Reason); err != nil {
				return targeting.Hold{}, err
			}
			h := targeting.Hold{ID: catalog.NewID("hld", s.cfg.Now()), Product: in.Product, Rule: in.Rule, Reason: in.Reason,
				Source: targeting.HoldManual, CreatedBy: p.Actor()}
			if in.Version != "" {
				v, err := catalog.ValidateVersion("version", in.Version)
				if err != nil {
					return h, err
				}
				u, err := s.cfg.Store.UpdateByVersion(ctx, in.Product, v)
				if err != nil {
					return h, err
				}
				h.UpdateID = u.ID
			}
			h, err := s.cfg.Store.CreateHold(ctx, h, nil)
			if err == nil {
				err = s.cfg.Refresh(ctx)
			}
			return h, err
		})
	tool(s, "plan_change", "Plan a change that exposes more devices (resume, advance or approve a deployment, release a hold, deploy an update): "+
		"a dry-run that changes nothing and returns a forecast (devices newly exposed, expected failures, cohorts), your budget "+
		"position and a plan_hash to pass to apply_plan. Plans go stale when the deployment or its health changes.", "", widens,
		func(ctx context.Context, p access.Principal, in agent.Change) (agent.Plan, error) {
			return s.cfg.Planner.Plan(ctx, p, in)
		})
	tool(s, "apply_plan", "Carry out a plan from plan_change if nothing changed since: within your budget it happens now; beyond it an "+
		"approval request is filed for a person (wait on it with get_approval). A stale plan is refused: plan again.", "", widens,
		func(ctx context.Context, p access.Principal, in applyIn) (agent.Outcome, error) {
			if !strings.HasPrefix(in.PlanHash, "plan_") || len(in.PlanHash) != 69 {
				return agent.Outcome{}, fault.Field("plan_hash", "not a plan hash")
			}
			return s.cfg.Planner.Apply(ctx, p, in.PlanHash)
		})
	tool(s, "get_approval", "The status of an approval request (pending, approved, denied, applied, failed), optionally waiting for a person to decide.",
		"", readOnly,
		func(ctx context.Context, p access.Principal, in approvalIn) (store.Approval, error) {
			if err := catalog.ValidateID("approval_id", "apr", in.ApprovalID); err != nil {
				return store.Approval{}, err
			}
			deadline := time.Now().Add(time.Duration(min(max(in.WaitSeconds, 0), 60)) * time.Second)
			for {
				a, err := s.cfg.Store.Approval(ctx, in.ApprovalID)
				if err != nil {
					return a, err
				}
				if a.TokenID != p.TokenID && !p.Can(access.Widen) {
					return store.Approval{}, fault.E(fault.Forbidden, "approval request %s is another token's", a.ID)
				}
				if a.Status != "pending" && a.Status != "approved" || !time.Now().Before(deadline) {
					return a, nil
				}
				select {
				case <-ctx.Done():
					return a, ctx.Err()
				case <-time.After(250 * time.Millisecond):
				}
			}
		})
}
