package rollout

import (
	"encoding/json"
	"time"
)

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
	// ProposedRollback, set by the API when it reads a halted deployment
	// not yet rolled back, is the version a rollback would offer (the
	// product's newest published version before this one).
	ProposedRollback string `json:"proposed_rollback,omitempty"`
}

// MarshalJSON leaves out what is not set yet: the wave before the first
// one starts and the approval before any.
func (d Deployment) MarshalJSON() ([]byte, error) {
	type plain Deployment // without these methods
	return json.Marshal(struct {
		plain
		Wave     *int `json:"wave,omitempty"`
		Approved *int `json:"approved,omitempty"`
	}{plain(d), setIndex(d.Wave), setIndex(d.Approved)})
}

// UnmarshalJSON reads what MarshalJSON writes: a missing wave or approval
// is -1.
func (d *Deployment) UnmarshalJSON(b []byte) error {
	type plain Deployment
	p := plain{Status: Status{Wave: -1, Approved: -1}}
	err := json.Unmarshal(b, &p)
	*d = Deployment(p)
	return err
}

// MarshalJSON leaves out the wave of an event before the first wave
// (the deployment's creation).
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		Wave *int `json:"wave,omitempty"`
	}{plain(e), setIndex(e.Wave)})
}

func setIndex(i int) *int {
	if i < 0 {
		return nil
	}
	return &i
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
