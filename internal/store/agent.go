package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
)

// AgentPlan is a dry-run an agent made: what it would do, to what, and how
// many devices it would newly expose. Applying it is recorded on the row.
type AgentPlan struct {
	Hash      string     `json:"plan_hash"`
	TokenID   string     `json:"token_id"`
	Action    string     `json:"action"`
	Target    string     `json:"target"`
	Body      string     `json:"-"`
	Exposure  int64      `json:"exposure"`
	CreatedAt time.Time  `json:"created_at"`
	AppliedAt *time.Time `json:"applied_at,omitempty"`
}

// SavePlan stores a plan (planning the same thing twice is one plan).
func (q *queries) SavePlan(ctx context.Context, p AgentPlan) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO agent_plans (hash, token_id, action, target, body, exposure, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING`,
		p.Hash, p.TokenID, p.Action, p.Target, p.Body, p.Exposure, p.CreatedAt.UTC())
	return unavailable(err)
}

// Plan returns a plan by hash, or NotFound.
func (q *queries) Plan(ctx context.Context, hash string) (AgentPlan, error) {
	var p AgentPlan
	var applied sql.NullTime
	err := q.db.QueryRowContext(ctx, `SELECT hash, token_id, action, target, body, exposure, created_at, applied_at
		FROM agent_plans WHERE hash = $1`, hash).Scan(&p.Hash, &p.TokenID, &p.Action, &p.Target, &p.Body, &p.Exposure, &p.CreatedAt, &applied)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fault.E(fault.NotFound, "no plan %s; make one with plan_change", hash)
	}
	p.CreatedAt, p.AppliedAt = p.CreatedAt.UTC(), timePtr(applied)
	return p, unavailable(err)
}

// MarkPlanApplied records that a plan was carried out (once).
func (q *queries) MarkPlanApplied(ctx context.Context, hash string) error {
	res, err := q.db.ExecContext(ctx, `UPDATE agent_plans SET applied_at = $2 WHERE hash = $1 AND applied_at IS NULL`, hash, q.now())
	if err != nil {
		return unavailable(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fault.E(fault.Conflict, "plan %s was already applied", hash)
	}
	return nil
}

// ExposureSpent sums the exposure of a token's plans applied for target
// since a time (its budget use).
func (q *queries) ExposureSpent(ctx context.Context, tokenID, target string, since time.Time) (int64, error) {
	var n int64
	err := q.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(exposure), 0) FROM agent_plans
		WHERE token_id = $1 AND target = $2 AND applied_at >= $3`, tokenID, target, since.UTC()).Scan(&n)
	return n, unavailable(err)
}

// Approval is a request for a human to let a plan beyond an agent's budget
// go ahead.
type Approval struct {
	ID        string     `json:"id"`
	PlanHash  string     `json:"plan_hash"`
	TokenID   string     `json:"token_id"`
	Action    string     `json:"action"`
	Target    string     `json:"target"`
	Exposure  int64      `json:"exposure"`
	Status    string     `json:"status"` // pending, approved, denied, applied, failed
	Reason    string     `json:"reason"`
	Result    string     `json:"result,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

const approvalColumns = `a.id, a.plan_hash, a.token_id, p.action, p.target, p.exposure, a.status, a.reason, a.result,
	a.created_at, a.decided_by, a.decided_at`

func scanApproval(row interface{ Scan(...any) error }) (Approval, error) {
	var a Approval
	var decided sql.NullTime
	err := row.Scan(&a.ID, &a.PlanHash, &a.TokenID, &a.Action, &a.Target, &a.Exposure, &a.Status, &a.Reason, &a.Result,
		&a.CreatedAt, &a.DecidedBy, &decided)
	a.CreatedAt, a.DecidedAt = a.CreatedAt.UTC(), timePtr(decided)
	return a, err
}

// RequestApproval files an approval request for a plan, audited as the agent's.
func (s *Store) RequestApproval(ctx context.Context, a Approval, actor string) (Approval, error) {
	err := s.InTx(ctx, func(tx *Tx) error {
		a.CreatedAt, a.Status = tx.now(), "pending"
		if _, err := tx.db.ExecContext(ctx, `INSERT INTO approvals (id, plan_hash, token_id, status, reason, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, a.ID, a.PlanHash, a.TokenID, a.Status, a.Reason, a.CreatedAt); err != nil {
			return unavailable(err)
		}
		return tx.audit(ctx, actor, audit.Change{Action: "approval.request", Target: a.ID, After: a, Reason: a.Reason})
	})
	return a, err
}

// Approval returns one approval request, or NotFound.
func (q *queries) Approval(ctx context.Context, id string) (Approval, error) {
	a, err := scanApproval(q.db.QueryRowContext(ctx, `SELECT `+approvalColumns+`
		FROM approvals a JOIN agent_plans p ON p.hash = a.plan_hash WHERE a.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fault.E(fault.NotFound, "no approval request %s", id)
	}
	return a, unavailable(err)
}

// ApprovalForPlan returns the approval request filed for a plan, or NotFound.
func (q *queries) ApprovalForPlan(ctx context.Context, hash string) (Approval, error) {
	a, err := scanApproval(q.db.QueryRowContext(ctx, `SELECT `+approvalColumns+`
		FROM approvals a JOIN agent_plans p ON p.hash = a.plan_hash WHERE a.plan_hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fault.E(fault.NotFound, "no approval request for plan %s", hash)
	}
	return a, unavailable(err)
}

// Approvals lists approval requests, newest first, optionally by status.
func (q *queries) Approvals(ctx context.Context, status string) ([]Approval, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT `+approvalColumns+`
		FROM approvals a JOIN agent_plans p ON p.hash = a.plan_hash
		WHERE ($1 = '' OR a.status = $1) ORDER BY a.created_at DESC, a.id DESC LIMIT 500`, status)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	out := []Approval{}
	for rows.Next() {
		a, err := scanApproval(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, a)
	}
	return out, unavailable(rows.Err())
}

// DecideApproval moves a pending request to approved or denied (by a
// human), or an approved one to applied or failed (with the result).
func (s *Store) DecideApproval(ctx context.Context, id, from, to, actor, reason, result string) (Approval, error) {
	var a Approval
	err := s.InTx(ctx, func(tx *Tx) error {
		before, err := tx.Approval(ctx, id)
		if err != nil {
			return err
		}
		if before.Status != from {
			return fault.E(fault.Conflict, "approval request %s is %s, not %s", id, before.Status, from)
		}
		now := tx.now()
		if from == "pending" {
			_, err = tx.db.ExecContext(ctx, `UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4 WHERE id = $1`, id, to, actor, now)
		} else {
			_, err = tx.db.ExecContext(ctx, `UPDATE approvals SET status = $2, result = $3 WHERE id = $1`, id, to, result)
		}
		if err != nil {
			return unavailable(err)
		}
		if a, err = tx.Approval(ctx, id); err != nil {
			return err
		}
		return tx.audit(ctx, actor, audit.Change{Action: "approval." + to, Target: id, Before: before, After: a, Reason: reason})
	})
	return a, err
}
