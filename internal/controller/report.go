package controller

import (
	"context"
	"slices"
	"time"

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
	// Timeline is the release's install outcomes hour by hour since it was
	// created (the last TimelineHours at most), beside every other
	// deployment's in the same hours: the time-matched reference the
	// health gate compares with, so an ambient incident shows as both
	// rising together.
	Timeline []HourInstalls `json:"timeline"`
}

// TimelineHours bounds a health report's timeline (two weeks).
const TimelineHours = 14 * 24

// HourInstalls is one hour of a deployment's timeline.
type HourInstalls struct {
	Hour           time.Time `json:"hour"`
	Installs       int64     `json:"installs"`
	Failed         int64     `json:"failed"`
	OthersInstalls int64     `json:"others_installs"`
	OthersFailed   int64     `json:"others_failed"`
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
	// RollbackOf is the bad deployment a rollback undoes.
	RollbackOf string `json:"rollback_of,omitempty"`
	// ProposedRollback, in a halted deployment's health report, is the
	// version a rollback would offer (see Controller.ProposedRollback).
	ProposedRollback string `json:"proposed_rollback,omitempty"`
}

// Summarize is the short form of a deployment.
func Summarize(d rollout.Deployment) DeploymentSummary {
	s := DeploymentSummary{ID: d.ID, Product: d.Product, Version: d.Version, State: d.State, Wave: d.Wave,
		Percent: d.Percent, By: d.By, Reason: d.Reason}
	if d.Plan.Rollback != nil {
		s.RollbackOf = d.Plan.Rollback.Deployment
	}
	return s
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
	proposed, err := c.ProposedRollback(ctx, d)
	if err != nil {
		return HealthReport{}, err
	}
	r := HealthReport{
		Deployment:    Summarize(d),
		Health:        health.Summarize(in, maxCells),
		OfferedByWave: make([]int64, len(d.Plan.Waves)),
	}
	r.Deployment.ProposedRollback = proposed
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
	r.Timeline, err = c.timeline(ctx, d)
	return r, err
}

// timeline reads the hours with installs of d and of the rest of the fleet
// while d has existed.
func (c *Controller) timeline(ctx context.Context, d rollout.Deployment) ([]HourInstalls, error) {
	to := c.now()
	from := d.CreatedAt
	if earliest := to.Add(-TimelineHours * time.Hour); from.Before(earliest) {
		from = earliest
	}
	release, err := c.store.HourlyInstalls(ctx, d.ID, false, nil, from, to)
	if err != nil {
		return nil, err
	}
	others, err := c.store.HourlyInstalls(ctx, d.ID, true, nil, from, to)
	if err != nil {
		return nil, err
	}
	out := []HourInstalls{}
	for h := health.HourOf(from); h <= health.HourOf(to); h++ {
		in, o := release[h], others[h]
		if in.Of+o.Of == 0 {
			continue
		}
		out = append(out, HourInstalls{Hour: time.Unix(h*3600, 0).UTC(), Installs: in.Of, Failed: in.Failed,
			OthersInstalls: o.Of, OthersFailed: o.Failed})
	}
	return slices.Clip(out), nil
}
