package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Wave is one step of a rollout plan: a cumulative percentage of the
// audience, or a paced wave of DevicesPerPeriod devices every Period.
type Wave struct {
	Percent          float64 `json:"percent,omitempty"`
	DevicesPerPeriod int64   `json:"devices_per_period,omitempty"`
	Period           string  `json:"period,omitempty"`
	Bake             string  `json:"bake,omitempty"`
}

// Window is a daily maintenance window in the device's local time.
type Window struct {
	Start int `json:"start_minute"`
	End   int `json:"end_minute"`
}

// Plan is how a deployment rolls out. The zero Plan is "all devices now".
type Plan struct {
	Ring            string     `json:"ring,omitempty"`
	Audience        string     `json:"audience,omitempty"`
	Waves           []Wave     `json:"waves,omitempty"`
	Bake            string     `json:"bake,omitempty"`
	Start           *time.Time `json:"start,omitempty"`
	Deadline        *time.Time `json:"deadline,omitempty"`
	Expedite        bool       `json:"expedite,omitempty"`
	RequireApproval bool       `json:"require_approval,omitempty"`
	Window          *Window    `json:"maintenance_window,omitempty"`
	// Gate: a plan of more than one wave is gated with the defaults unless
	// NoGate; a single wave only with a Gate.
	Gate   *Gate `json:"gate,omitempty"`
	NoGate bool  `json:"no_gate,omitempty"`
	// Order "risk" exposes the least risky devices first (with Explore,
	// default 0.2, of every wave chosen at random); it pins the product's
	// newest risk model unless RiskModel names one.
	Order     string  `json:"order,omitempty"`
	Explore   float64 `json:"explore,omitempty"`
	RiskModel string  `json:"risk_model,omitempty"`
	// Promotions record each move to a later ring (Client.Promote).
	Promotions []Promotion `json:"promotions,omitempty"`
	// Rollback is set on a rollback's plan (made by Client.Rollback).
	Rollback *RollbackOf `json:"rollback,omitempty"`
}

// Promotion is one move of a deployment from ring From to ring To; waves
// from AtWave on roll out to To.
type Promotion struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	AtWave int       `json:"at_wave"`
	At     time.Time `json:"at"`
	By     string    `json:"by"`
	Reason string    `json:"reason"`
}

// RollbackOf names the bad deployment a rollback undoes.
type RollbackOf struct {
	Deployment string `json:"deployment"`
	UpdateID   string `json:"update_id"`
	Version    string `json:"version"`
	Reason     string `json:"reason"`
}

// Gate enables a deployment's health gate; zero values take the defaults.
type Gate struct {
	AllowInconclusive bool    `json:"allow_inconclusive,omitempty"`
	Alpha             float64 `json:"alpha,omitempty"`
	Beta              float64 `json:"beta,omitempty"`
	Margin            float64 `json:"margin,omitempty"`
	MinCompleteness   float64 `json:"min_completeness,omitempty"`
	BaselineFailure   float64 `json:"baseline_failure,omitempty"`
	BaselineRollback  float64 `json:"baseline_rollback,omitempty"`
	BaselineCrash     float64 `json:"baseline_crash,omitempty"`
	// AutoHold is "active" or "proposed" to hold a cohort that explains a
	// regression instead of pausing the rollout.
	AutoHold string `json:"auto_hold,omitempty"`
}

// GateTest is one metric's sequential test.
type GateTest struct {
	Metric      string  `json:"metric"`
	Observed    Rate    `json:"observed"`
	Baseline    float64 `json:"baseline"`
	LogLRWorse  float64 `json:"log_lr_worse"`
	LogLRBetter float64 `json:"log_lr_better"`
	Verdict     string  `json:"verdict"`
}

// GateResult is a gate's verdict with its numbers.
type GateResult struct {
	Verdict      string     `json:"verdict"`
	Wave         int        `json:"wave"`
	Offered      int64      `json:"offered"`
	Reported     int64      `json:"reported"`
	Completeness float64    `json:"completeness"`
	Tests        []GateTest `json:"tests"`
	Summary      string     `json:"summary"`
	Baseline     struct {
		Failure  float64 `json:"failure"`
		Rollback float64 `json:"rollback"`
		Crash    float64 `json:"crash"`
		Source   string  `json:"source"`
	} `json:"baseline"`
	// Cohort, when set, is the cohort cell the regression was localized
	// to, and HoldID the automatic hold on it.
	Cohort *struct {
		Cell string `json:"cell"`
	} `json:"cohort,omitempty"`
	HoldID string `json:"hold_id,omitempty"`
}

// DeployPlan deploys a published version by a plan. Deploying it again with
// the same plan returns the live deployment.
func (c *Client) DeployPlan(ctx context.Context, product, version string, plan Plan) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/v1/deployments", nil, map[string]any{"product": product, "version": version, "plan": plan}, &out)
	return out, err
}

// Command sends pause, resume, halt, cancel, approve or advance with a
// reason, and returns the deployment after it.
func (c *Client) Command(ctx context.Context, id, command, reason string) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/v1/deployments/"+url.PathEscape(id)+"/"+url.PathEscape(command), nil,
		map[string]string{"reason": reason}, &out)
	return out, err
}

// Rollback halts deployment id (if it still runs) and offers the
// product's earlier version to, only to the devices that installed the bad
// one, in the bad deployment's waves (or waves, when given) under its
// gate. It returns the rollback deployment.
func (c *Client) Rollback(ctx context.Context, id, to, reason string, waves ...Wave) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/v1/deployments/"+url.PathEscape(id)+"/rollback", nil,
		map[string]any{"to": to, "reason": reason, "waves": waves}, &out)
	return out, err
}

// Promote moves a completed deployment on to ring (the next by rank when
// empty), in waves (the last ring's when none are given), keeping its
// history, gate and exposure: the devices of the rings it leaves stay
// offered.
func (c *Client) Promote(ctx context.Context, id, ring, reason string, waves ...Wave) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/v1/deployments/"+url.PathEscape(id)+"/promote", nil,
		map[string]any{"ring": ring, "reason": reason, "waves": waves}, &out)
	return out, err
}

// Event is something that happened to a deployment.
type Event struct {
	ID    string    `json:"id"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	Kind  string    `json:"kind"`
	// Wave is the index (from 0) of the wave it concerns; -1 for none.
	Wave    int     `json:"wave"`
	Percent float64 `json:"percent"`
	Detail  string  `json:"detail,omitempty"`
}

// MarshalJSON leaves out the wave of an event that concerns none.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		Wave *int `json:"wave,omitempty"`
	}{plain(e), setIndex(e.Wave)})
}

// UnmarshalJSON reads an event; a missing wave is -1.
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	p := plain{Wave: -1}
	err := json.Unmarshal(b, &p)
	*e = Event(p)
	return err
}

// DeploymentEvents lists a deployment's events, oldest first.
func (c *Client) DeploymentEvents(ctx context.Context, id string) ([]Event, error) {
	var out struct {
		Events []Event `json:"events"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/deployments/"+url.PathEscape(id)+"/events", nil, nil, &out)
	return out.Events, err
}

// Hold is a safeguard hold.
type Hold struct {
	ID           string     `json:"id"`
	Product      string     `json:"product"`
	UpdateID     string     `json:"update_id,omitempty"`
	Version      string     `json:"version,omitempty"`
	Rule         string     `json:"rule"`
	Reason       string     `json:"reason"`
	Source       string     `json:"source"`
	Status       string     `json:"status"`
	DeploymentID string     `json:"deployment_id,omitempty"`
	CreatedBy    string     `json:"created_by"`
	CreatedAt    time.Time  `json:"created_at"`
	ReleasedBy   string     `json:"released_by,omitempty"`
	ReleasedAt   *time.Time `json:"released_at,omitempty"`
}

// CreateHold holds a product's update (version, or every update when empty)
// for the devices the rule matches.
func (c *Client) CreateHold(ctx context.Context, product, version, rule, reason string) (Hold, error) {
	var out Hold
	err := c.do(ctx, http.MethodPost, "/v1/holds", nil,
		map[string]string{"product": product, "version": version, "rule": rule, "reason": reason}, &out)
	return out, err
}

// ReleaseHold releases a hold, saying why (required: its devices are
// offered the update again).
func (c *Client) ReleaseHold(ctx context.Context, id, reason string) (Hold, error) {
	var out Hold
	err := c.do(ctx, http.MethodPost, "/v1/holds/"+url.PathEscape(id)+"/release", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// ActivateHold accepts a hold the health gate proposed.
func (c *Client) ActivateHold(ctx context.Context, id string) (Hold, error) {
	var out Hold
	err := c.do(ctx, http.MethodPost, "/v1/holds/"+url.PathEscape(id)+"/activate", nil, nil, &out)
	return out, err
}

// Holds lists holds (status "active", "released" or "" for all).
func (c *Client) Holds(ctx context.Context, product, status string) ([]Hold, error) {
	var out struct {
		Holds []Hold `json:"holds"`
	}
	q := url.Values{}
	if product != "" {
		q.Set("product", product)
	}
	if status != "" {
		q.Set("status", status)
	}
	err := c.do(ctx, http.MethodGet, "/v1/holds", q, nil, &out)
	return out.Holds, err
}

// Ring is an ordered, named population of devices.
type Ring struct {
	Name        string   `json:"name,omitempty"`
	Rank        int      `json:"rank"`
	Rule        string   `json:"rule,omitempty"`
	Description string   `json:"description,omitempty"`
	Members     []string `json:"members,omitempty"`
}

// DeleteRing deletes a ring no deployment was planned for.
func (c *Client) DeleteRing(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/rings/"+url.PathEscape(name), nil, nil, nil)
}

// PutRing creates or replaces a ring.
func (c *Client) PutRing(ctx context.Context, r Ring) (Ring, error) {
	var out Ring
	name := r.Name
	r.Name = ""
	err := c.do(ctx, http.MethodPut, "/v1/rings/"+url.PathEscape(name), nil, r, &out)
	return out, err
}

// Rings lists rings by rank.
func (c *Client) Rings(ctx context.Context) ([]Ring, error) {
	var out struct {
		Rings []Ring `json:"rings"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/rings", nil, nil, &out)
	return out.Rings, err
}

// ExplainRequest names a device (from the registry) or describes one.
type ExplainRequest struct {
	DeviceID   string            `json:"device_id"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Installed  map[string]string `json:"installed,omitempty"`
	UpdateID   string            `json:"update_id,omitempty"`
	At         *time.Time        `json:"at,omitempty"`
}

// Check is one step of a decision.
type Check struct {
	Step   string `json:"step"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Decision explains whether a device is offered one update.
type Decision struct {
	UpdateID     string `json:"update_id"`
	DeploymentID string `json:"deployment_id,omitempty"`
	Product      string `json:"product"`
	Version      string `json:"version"`
	Offered      bool   `json:"offered"`
	// FailedStep is the first failing step, FailedSteps every one.
	FailedStep  string   `json:"failed_step,omitempty"`
	FailedSteps []string `json:"failed_steps,omitempty"`
	Checks      []Check  `json:"checks"`
	// Risk, in a risk-ordered deployment, is the device's predicted
	// failure risk and why.
	Risk *RiskExplanation `json:"risk,omitempty"`
}

// RiskContribution is one attribute value's effect on a device's risk.
type RiskContribution struct {
	Feature   string  `json:"feature"`
	LogOdds   float64 `json:"log_odds"`
	OddsRatio float64 `json:"odds_ratio"`
}

// RiskExplanation is a device's predicted failure risk: the sigmoid of the
// intercept plus every contribution; Quantile is its place in the fleet
// (0: least risky).
type RiskExplanation struct {
	Score         float64            `json:"score"`
	Intercept     float64            `json:"intercept"`
	Quantile      float64            `json:"quantile"`
	Contributions []RiskContribution `json:"contributions"`
}

// RiskModel summarizes a product's trained risk model.
type RiskModel struct {
	ID             string             `json:"id"`
	Product        string             `json:"product"`
	TrainedAt      time.Time          `json:"trained_at"`
	TrainedBy      string             `json:"trained_by"`
	Examples       int64              `json:"examples"`
	Failures       int64              `json:"failures"`
	Lambda         float64            `json:"lambda"`
	Slope          float64            `json:"slope"`
	Offset         float64            `json:"offset"`
	PopulationMean float64            `json:"population_mean"`
	Population     int                `json:"population"`
	Weights        int                `json:"weights"`
	Top            []RiskContribution `json:"top"`
}

// TrainRiskModel trains a product's risk model from its past deployments'
// outcomes; risk-ordered deployments created afterwards use it.
func (c *Client) TrainRiskModel(ctx context.Context, product string) (RiskModel, error) {
	var out RiskModel
	err := c.do(ctx, http.MethodPost, "/v1/products/"+url.PathEscape(product)+"/risk-model", nil, nil, &out)
	return out, err
}

// RiskModel returns a product's newest risk model.
func (c *Client) RiskModel(ctx context.Context, product string) (RiskModel, error) {
	var out RiskModel
	err := c.do(ctx, http.MethodGet, "/v1/products/"+url.PathEscape(product)+"/risk-model", nil, nil, &out)
	return out, err
}

// Explanation is the answer to Explain.
type Explanation struct {
	Device struct {
		ID         string            `json:"id"`
		Attributes map[string]string `json:"attributes"`
		Installed  map[string]string `json:"installed"`
		Source     string            `json:"source"`
	} `json:"device"`
	At        time.Time  `json:"at"`
	Decisions []Decision `json:"decisions"`
}

// Explain says why a device is or is not offered each update.
func (c *Client) Explain(ctx context.Context, req ExplainRequest) (Explanation, error) {
	var out Explanation
	err := c.do(ctx, http.MethodPost, "/v1/explain", nil, req, &out)
	return out, err
}

// Rate is a proportion with its 95% interval.
type Rate struct {
	Events int64   `json:"events"`
	Of     int64   `json:"of"`
	Value  float64 `json:"value"`
	Low    float64 `json:"low"`
	High   float64 `json:"high"`
}

// Rates are a population's outcome counts and rates.
type Rates struct {
	Devices  map[string]int64 `json:"devices"`
	Failure  Rate             `json:"failure"`
	Rollback Rate             `json:"rollback"`
	Crash    Rate             `json:"crash"`
}

// Health is a deployment's health report.
type Health struct {
	Deployment struct {
		ID      string  `json:"id"`
		Product string  `json:"product"`
		Version string  `json:"version"`
		State   string  `json:"state"`
		Wave    int     `json:"wave"`
		Percent float64 `json:"percent"`
		By      string  `json:"by"`
		Reason  string  `json:"reason"`
	} `json:"deployment"`
	// Offered is how many devices the server offered the update to, and
	// OfferedByWave the same per wave (index 0 is wave 1).
	Offered       int64       `json:"offered"`
	OfferedByWave []int64     `json:"offered_by_wave"`
	Gate          *GateResult `json:"gate,omitempty"`
	// Timeline is the release's install outcomes hour by hour, beside
	// every other deployment's in the same hours.
	Timeline []HourInstalls `json:"timeline"`
	Health   struct {
		Overall Rates `json:"overall"`
		Waves   []struct {
			Wave int `json:"wave"`
			Rates
		} `json:"waves"`
		Cells []struct {
			Cell string `json:"cell"`
			Rates
		} `json:"cells"`
	} `json:"health"`
}

// HourInstalls is one hour of a health timeline.
type HourInstalls struct {
	Hour           time.Time `json:"hour"`
	Installs       int64     `json:"installs"`
	Failed         int64     `json:"failed"`
	OthersInstalls int64     `json:"others_installs"`
	OthersFailed   int64     `json:"others_failed"`
}

// DeploymentHealth returns what a deployment's devices reported.
func (c *Client) DeploymentHealth(ctx context.Context, id string) (Health, error) {
	var out Health
	err := c.do(ctx, http.MethodGet, "/v1/deployments/"+url.PathEscape(id)+"/health", nil, nil, &out)
	return out, err
}

// DeviceEvent is one report from a device.
type DeviceEvent struct {
	EventID      string            `json:"event_id"`
	DeviceID     string            `json:"device_id"`
	UpdateID     string            `json:"update_id"`
	DeploymentID string            `json:"deployment_id,omitempty"`
	Type         string            `json:"type"`
	Time         time.Time         `json:"time"`
	ErrorCode    string            `json:"error_code,omitempty"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	// OfferReceipt is the offer_receipt of the offer the event is about.
	OfferReceipt string `json:"offer_receipt,omitempty"`
}

// EventResult is the server's answer for one event.
type EventResult struct {
	EventID string `json:"event_id"`
	Index   int    `json:"index"`
	Status  string `json:"status"`
	Error   string `json:"error,omitempty"`
}

// EventsResponse is the answer to SendEvents.
type EventsResponse struct {
	Accepted int `json:"accepted"`
	// Unauthenticated counts valid events sent without a device credential:
	// the server keeps them apart and they never count toward health.
	Unauthenticated int `json:"unauthenticated"`
	// NotOffered counts valid events that cite no offer the server made to
	// the device before the event: they never count toward health.
	NotOffered int           `json:"not_offered"`
	Rejected   int           `json:"rejected"`
	Results    []EventResult `json:"results"`
}

// SendEvents reports a batch of device events; each is answered on its own.
func (c *Client) SendEvents(ctx context.Context, events []DeviceEvent) (EventsResponse, error) {
	var out EventsResponse
	err := c.do(ctx, http.MethodPost, "/v1/device/events", nil, map[string]any{"events": events}, &out)
	return out, err
}
