package controller

import (
	"context"
	"strings"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Rollback undoes deployment id: it halts it if it still runs, then
// deploys the product's earlier published version to as a rollback,
// offered only to the devices that run the bad version, in the bad
// deployment's waves, ring, audience, gate and order (or waves, when
// given). Repeating it with the same arguments returns the rollback
// already made.
func (c *Controller) Rollback(ctx context.Context, id, to string, waves []rollout.Wave, actor, reason string) (rollout.Deployment, bool, error) {
	if strings.TrimSpace(reason) == "" {
		return rollout.Deployment{}, false, fault.Field("reason", "say why the release is rolled back; devices and the audit log are told")
	}
	if err := catalog.ValidateReason("reason", reason); err != nil {
		return rollout.Deployment{}, false, err
	}
	bad, err := c.store.Deployment(ctx, id)
	if err != nil {
		return bad, false, err
	}
	if bad.Plan.Rollback != nil {
		return rollout.Deployment{}, false, fault.E(fault.Conflict, "deployment %s is itself a rollback (of %s); deploy a version instead", id, bad.Plan.Rollback.Deployment)
	}
	tv, err := catalog.ValidateVersion("to", to)
	if err != nil {
		return rollout.Deployment{}, false, err
	}
	bv, err := version.Parse(bad.Version)
	if err != nil {
		return rollout.Deployment{}, false, err
	}
	if !tv.Less(bv) {
		return rollout.Deployment{}, false, fault.Field("to", "%s is not earlier than %s, the version deployment %s rolled out", tv, bv, id)
	}
	target, err := c.store.UpdateByVersion(ctx, bad.Product, tv)
	if err != nil {
		return rollout.Deployment{}, false, err
	}
	if target.State != catalog.StatePublished {
		return rollout.Deployment{}, false, fault.E(fault.Conflict, "%s %s is %s; a rollback offers a published version", bad.Product, tv, target.State)
	}
	if !bad.State.Terminal() {
		if _, err := c.Command(ctx, id, rollout.Halt, actor, "rolled back to "+tv.String()+": "+reason); err != nil && !fault.Is(err, fault.Conflict) {
			return rollout.Deployment{}, false, err
		}
	}
	p := bad.Plan
	plan := rollout.Plan{Ring: p.Ring, Audience: p.Audience, Waves: p.Waves, Bake: p.Bake, RequireApproval: p.RequireApproval,
		Window: p.Window, Gate: p.Gate, NoGate: p.NoGate, Order: p.Order, Explore: p.Explore, RiskModel: p.RiskModel,
		Rollback: &rollout.Rollback{Deployment: id, UpdateID: bad.UpdateID, Version: bad.Version, Reason: reason}}
	if len(waves) > 0 {
		plan.Waves = waves
	}
	return c.deploy(ctx, target.ID, plan, actor)
}

// ProposedRollback is the version a halted deployment would roll back to:
// the newest published version of its product before its own, or "" when
// there is none or it was already rolled back.
func (c *Controller) ProposedRollback(ctx context.Context, d rollout.Deployment) (string, error) {
	if d.State != rollout.Halted || d.Plan.Rollback != nil {
		return "", nil
	}
	if rs, err := c.store.Deployments(ctx, store.DeploymentFilter{RollbackOf: d.ID, Limit: 1}); err != nil || len(rs) > 0 {
		return "", err
	}
	v, err := version.Parse(d.Version)
	if err != nil {
		return "", err
	}
	for {
		earlier, err := c.store.EarlierPublished(ctx, d.Product, v, 4)
		if err != nil || len(earlier) == 0 {
			return "", err
		}
		for _, u := range earlier {
			if u.State == catalog.StatePublished {
				return u.Version, nil
			}
		}
		if v, err = version.Parse(earlier[len(earlier)-1].Version); err != nil {
			return "", err
		}
	}
}
