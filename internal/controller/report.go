package controller

import (
	"context"

	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
)

// HealthReport is what a deployment's health looks like to people and
// agents: its state, rates per wave and cohort, and the gate's verdict.
type HealthReport struct {
	Deployment DeploymentSummary `json:"deployment"`
	// Offered is how many devices the server offered the update to (its
	// own records: exposure, not what devices say), and OfferedByWave the
	// same by the wave that first included them (index 0 is wave 1).
	Offered       int64              `json:"offered"`
	OfferedByWave []int64            `json:"offered_by_wave"`
	Health        health.Report      `json:"health"`
	Gate          *health.GateResult `json:"gate,omitempty"`
}

// DeploymentSummary is a deployment's identity and position.
type DeploymentSummary struct {
	ID      string        `json:"id"`
	Product string        `json:"product"`
	Version string        `json:"version"`
	State   rollout.State `json:"state"`
	Wave    int           `json:"wave"`
	Percent float64       `json:"percent"`
	By      string        `json:"by,omitempty"`
	Reason  string        `json:"reason,omitempty"`
}

// Report builds a deployment's health report (maxCells worst cohorts).
func (c *Controller) Report(ctx context.Context, d rollout.Deployment, maxCells int) (HealthReport, error) {
	counts, err := c.store.HealthCounts(ctx, d.ID, false)
	if err != nil {
		return HealthReport{}, err
	}
	in := make([]health.Count, len(counts))
	for i, hc := range counts {
		in[i] = health.Count{Wave: hc.Wave, Outcome: hc.Outcome, Cell: hc.Cell, Devices: hc.Devices}
	}
	r := HealthReport{
		Deployment: DeploymentSummary{ID: d.ID, Product: d.Product, Version: d.Version, State: d.State, Wave: d.Wave,
			Percent: d.Percent, By: d.By, Reason: d.Reason},
		Health:        health.Summarize(in, maxCells),
		OfferedByWave: make([]int64, len(d.Plan.Waves)),
	}
	offers, err := c.store.OfferCounts(ctx, d.ID)
	if err != nil {
		return HealthReport{}, err
	}
	for w, n := range offers {
		if w < len(r.OfferedByWave) {
			r.OfferedByWave[w] = n
		}
		r.Offered += n
	}
	if d.Plan.Gate != nil {
		g, err := c.Gate(ctx, &d, false)
		if err != nil {
			return r, err
		}
		r.Gate = &g
	}
	return r, nil
}
