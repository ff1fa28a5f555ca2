package controller

import (
	"context"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// Promote moves a completed deployment on to a ring of higher rank (the
// next one by rank when ring is empty), with waves for it (the last ring's
// waves when none are given): same deployment, events, gate and health
// history; the devices of the rings it leaves stay offered.
func (c *Controller) Promote(ctx context.Context, id, ring string, waves []rollout.Wave, actor, reason string) (rollout.Deployment, error) {
	cur, err := c.store.Deployment(ctx, id)
	if err != nil {
		return cur, err
	}
	to, err := c.NextRing(ctx, cur, ring)
	if err != nil {
		return cur, err
	}
	var acts []rollout.Action
	var dep *rollout.Deployment
	d, err := c.store.MutateDeployment(ctx, id, actor, func(d *rollout.Deployment) ([]rollout.Action, error) {
		plan, st, act, err := rollout.Promote(d.Plan, d.Status, to, waves, actor, reason, c.now())
		if err != nil {
			return nil, err
		}
		d.Plan, d.Status, dep, acts = plan, st, d, []rollout.Action{act}
		return acts, nil
	}, func(tx *store.Tx) error { return c.alertsFor(ctx, tx, dep, actor, acts) })
	if err == nil {
		c.changed(ctx)
	}
	return d, err
}

// NextRing is the ring a promotion of d moves on to: ring, checked to
// rank above d's, or the next one by rank when ring is empty.
func (c *Controller) NextRing(ctx context.Context, d rollout.Deployment, ring string) (string, error) {
	rings, err := c.store.Rings(ctx)
	if err != nil {
		return "", err
	}
	return nextRing(rings, d.Plan.Ring, ring)
}

// nextRing checks that ring to (or, when empty, the ring of lowest rank
// above from's) outranks from, and returns it.
func nextRing(rings []targeting.Ring, from, to string) (string, error) {
	rank := map[string]int{}
	for _, r := range rings {
		rank[r.Name] = r.Rank
	}
	fr, ok := rank[from]
	if from != "" && !ok {
		return "", fault.E(fault.Conflict, "the deployment's ring %q no longer exists", from)
	}
	if to == "" {
		best := ""
		for _, r := range rings {
			if r.Rank > fr && (best == "" || r.Rank < rank[best]) {
				best = r.Name
			}
		}
		if best == "" {
			return "", fault.E(fault.Conflict, "no ring ranks above %s (rank %d): give --ring, or deploy to every device", from, fr)
		}
		return best, nil
	}
	tr, ok := rank[to]
	switch {
	case !ok:
		return "", fault.E(fault.NotFound, "ring %q not found", to)
	case from != "" && tr <= fr:
		return "", fault.Field("ring", "ring %s (rank %d) does not rank above %s (rank %d): a deployment is promoted to later rings only", to, tr, from, fr)
	}
	return to, nil
}
