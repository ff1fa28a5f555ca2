package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// RiskModel is a stored risk model of a product.
type RiskModel struct {
	ID        string      `json:"id"`
	Product   string      `json:"product"`
	Model     *risk.Model `json:"model"`
	TrainedAt time.Time   `json:"trained_at"`
	TrainedBy string      `json:"trained_by"`
}

// InsertRiskModel stores a trained model of m.Product, audited as actor.
func (s *Store) InsertRiskModel(ctx context.Context, m RiskModel, actor string) (RiskModel, error) {
	body, err := json.Marshal(m.Model)
	if err != nil {
		return m, err
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.Product(ctx, m.Product); err != nil {
			return err
		}
		m.TrainedAt, m.TrainedBy = tx.now(), actor
		if _, err := tx.db.ExecContext(ctx, `INSERT INTO risk_models (id, product, model, examples, failures, trained_at, trained_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, m.Product, string(body), m.Model.Examples, m.Model.Failures, m.TrainedAt, actor); err != nil {
			return unavailable(err)
		}
		summary := map[string]any{"product": m.Product, "examples": m.Model.Examples, "failures": m.Model.Failures, "lambda": m.Model.Lambda}
		return tx.audit(ctx, actor, audit.Change{Action: "risk_model.train", Target: m.ID, After: summary})
	})
	return m, err
}

// LatestRiskModel returns a product's newest risk model; NotFound when it
// has none.
func (q *queries) LatestRiskModel(ctx context.Context, product string) (RiskModel, error) {
	return q.riskModel(ctx, `SELECT id, product, model, trained_at, trained_by FROM risk_models
		WHERE product = $1 ORDER BY trained_at DESC, id DESC LIMIT 1`, product, "product "+product+" has no risk model; train one first")
}

// RiskModelByID returns a stored risk model.
func (q *queries) RiskModelByID(ctx context.Context, id string) (RiskModel, error) {
	return q.riskModel(ctx, `SELECT id, product, model, trained_at, trained_by FROM risk_models WHERE id = $1`, id, "risk model "+id+" not found")
}

func (q *queries) riskModel(ctx context.Context, query, arg, notFound string) (RiskModel, error) {
	var m RiskModel
	var body string
	err := q.db.QueryRowContext(ctx, query, arg).Scan(&m.ID, &m.Product, &body, &m.TrainedAt, &m.TrainedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return m, fault.E(fault.NotFound, "%s", notFound)
	}
	if err != nil {
		return m, unavailable(err)
	}
	m.TrainedAt = m.TrainedAt.UTC()
	m.Model = &risk.Model{}
	return m, json.Unmarshal([]byte(body), m.Model)
}

// RiskExamples returns up to limit past installs of product (newest
// first): each device's registry attributes and whether it failed.
func (q *queries) RiskExamples(ctx context.Context, product string, limit int) ([]risk.Example, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT dv.attributes, o.outcome FROM device_outcomes o
		JOIN deployment_numbers dn ON dn.number = o.deployment
		JOIN deployments d ON d.id = dn.deployment_id
		JOIN updates u ON u.id = d.update_id
		JOIN device_numbers vn ON vn.number = o.device
		JOIN devices dv ON dv.id = vn.device_id
		WHERE u.product = $1 AND o.outcome IN `+installCodes+`
		ORDER BY o.at DESC LIMIT $2`, product, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []risk.Example
	for rows.Next() {
		var attrs string
		var outcome int
		if err := rows.Scan(&attrs, &outcome); err != nil {
			return nil, unavailable(err)
		}
		e := risk.Example{Failed: outcome != outcomeCodes[telemetry.InstallSucceeded]}
		if json.Unmarshal([]byte(attrs), &e.Attributes) != nil {
			continue
		}
		out = append(out, e)
	}
	return out, unavailable(rows.Err())
}
