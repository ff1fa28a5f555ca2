package targeting

import "time"

// HoldSource says who created a hold.
type HoldSource string

const (
	HoldManual    HoldSource = "manual"
	HoldAutomatic HoldSource = "automatic"
)

// HoldStatus says whether a hold blocks offers.
type HoldStatus string

const (
	HoldProposed HoldStatus = "proposed" // automatic, waiting for a human to activate it
	HoldActive   HoldStatus = "active"
	HoldReleased HoldStatus = "released"
)

// Hold (a safeguard hold) blocks an update, or every update of a product,
// for the devices its rule matches.
type Hold struct {
	ID       string     `json:"id"`
	Product  string     `json:"product"`
	UpdateID string     `json:"update_id,omitempty"` // empty: all of the product's updates
	Version  string     `json:"version,omitempty"`
	Rule     string     `json:"rule"`
	Reason   string     `json:"reason"`
	Source   HoldSource `json:"source"`
	Status   HoldStatus `json:"status"`
	// DeploymentID is the deployment whose health evidence created an
	// automatic hold.
	DeploymentID string     `json:"deployment_id,omitempty"`
	CreatedBy    string     `json:"created_by"`
	CreatedAt    time.Time  `json:"created_at"`
	ReleasedBy   string     `json:"released_by,omitempty"`
	ReleasedAt   *time.Time `json:"released_at,omitempty"`
}

// Ring is an ordered, named population of devices (canary, insider, broad,
// retail…): the devices its rule matches plus its explicit members.
type Ring struct {
	Name        string    `json:"name"`
	Rank        int       `json:"rank"`
	Rule        string    `json:"rule,omitempty"`
	Description string    `json:"description,omitempty"`
	Members     []string  `json:"members,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}
