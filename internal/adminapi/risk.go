package adminapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/httpapi"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/store"
)

// Risk model training limits: the newest maxRiskExamples installs train
// it (a few seconds of Newton's method with cross-validation), and at
// most maxRiskPopulation registry devices calibrate its quantiles.
const (
	maxRiskExamples   = 100_000
	minRiskExamples   = 200
	maxRiskPopulation = 200_000
	riskSummaryTop    = 20
)

// riskModelSummary is a stored risk model as the API shows it: how it was
// trained and its largest weights (the quantiles stay internal).
type riskModelSummary struct {
	ID             string              `json:"id"`
	Product        string              `json:"product"`
	TrainedAt      time.Time           `json:"trained_at"`
	TrainedBy      string              `json:"trained_by"`
	Examples       int64               `json:"examples"`
	Failures       int64               `json:"failures"`
	Lambda         float64             `json:"lambda"`
	Slope          float64             `json:"slope"`
	Offset         float64             `json:"offset"`
	PopulationMean float64             `json:"population_mean"`
	Population     int                 `json:"population"`
	Weights        int                 `json:"weights"`
	Top            []risk.Contribution `json:"top"`
}

func summarizeRisk(m store.RiskModel) riskModelSummary {
	return riskModelSummary{ID: m.ID, Product: m.Product, TrainedAt: m.TrainedAt, TrainedBy: m.TrainedBy,
		Examples: m.Model.Examples, Failures: m.Model.Failures, Lambda: m.Model.Lambda, Slope: m.Model.Slope, Offset: m.Model.Offset,
		PopulationMean: m.Model.Mean, Population: m.Model.Population, Weights: len(m.Model.Weights), Top: m.Model.Top(riskSummaryTop)}
}

// riskProduct validates the product in the path and the caller's scope.
func riskProduct(r *http.Request) (string, error) {
	name := r.PathValue("name")
	err := catalog.ValidateProductName("name", name)
	if err == nil {
		err = Principal(r.Context()).AuthorizeProduct(name)
	}
	return name, err
}

func (a *API) getRiskModel(w http.ResponseWriter, r *http.Request) {
	name, err := riskProduct(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	m, err := a.cfg.Store.LatestRiskModel(r.Context(), name)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, summarizeRisk(m))
}

// trainRiskModel trains a product's risk model from its past deployments'
// outcomes and the registry's devices, and stores it; risk-ordered
// deployments created from now on pin it.
func (a *API) trainRiskModel(w http.ResponseWriter, r *http.Request) {
	name, err := riskProduct(r)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	ctx := r.Context()
	if _, err := a.cfg.Store.Product(ctx, name); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	m, err := a.train(ctx, name)
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	stored, err := a.cfg.Store.InsertRiskModel(ctx, store.RiskModel{ID: catalog.NewID("rsk", a.cfg.Now()), Product: name, Model: m}, Principal(ctx).Actor())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	httpapi.Logger(ctx).Info("risk model trained", "product", name, "model", stored.ID, "examples", m.Examples, "actor", Principal(ctx).Actor())
	httpapi.WriteJSON(w, http.StatusCreated, summarizeRisk(stored))
}

func (a *API) train(ctx context.Context, product string) (*risk.Model, error) {
	examples, err := a.cfg.Store.RiskExamples(ctx, product, maxRiskExamples)
	if err != nil {
		return nil, err
	}
	if len(examples) < minRiskExamples {
		return nil, fault.E(fault.Invalid, "%s has %d finished installs of past releases with device attributes; a risk model needs at least %d",
			product, len(examples), minRiskExamples)
	}
	m, err := risk.Train(examples, risk.Options{})
	if err != nil {
		return nil, fault.Wrap(err, fault.Invalid, fmt.Sprintf("cannot train a risk model of %s: %v", product, err))
	}
	devices, err := a.cfg.Store.DevicesWithProduct(ctx, product, maxRiskPopulation)
	if err != nil {
		return nil, err
	}
	scores := make([]float64, 0, len(devices))
	for _, d := range devices {
		scores = append(scores, m.Score(d.Attributes))
	}
	if len(scores) == 0 { // no registry: the trained-on installs stand for the population
		for _, e := range examples {
			scores = append(scores, m.Score(e.Attributes))
		}
	}
	m.Calibrate(scores)
	return m, nil
}
