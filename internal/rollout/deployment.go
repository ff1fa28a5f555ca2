package rollout

import "time"

// Deployment rolls one published update out to an audience by a plan.
type Deployment struct {
	ID       string `json:"id"`
	UpdateID string `json:"update_id"`
	Product  string `json:"product"`
	Version  string `json:"version"`
	Status
	Plan Plan `json:"plan"`
	// Salt seeds this deployment's device order (wave buckets).
	Salt      string    `json:"-"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Event is one thing that happened to a deployment.
type Event struct {
	ID           string    `json:"id"`
	DeploymentID string    `json:"deployment_id"`
	At           time.Time `json:"at"`
	Actor        string    `json:"actor"`
	Action
}

// ControllerActor names the rollout controller in events.
const ControllerActor = "controller"
