package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Enrollment is a device's credential, obtained with an enrollment key.
type Enrollment struct {
	DeviceID   string `json:"device_id"`
	Credential string `json:"credential"`
}

// Enroll exchanges a fleet enrollment key (rme_…) and a device id for the
// device's credential (rmd_…). Use the credential as the token of the
// device's client: c.WithToken(e.Credential).
func (c *Client) Enroll(ctx context.Context, enrollmentKey, deviceID string) (Enrollment, error) {
	var out Enrollment
	err := c.WithToken(enrollmentKey).do(ctx, http.MethodPost, "/v1/device/enroll", nil, map[string]string{"device_id": deviceID}, &out)
	return out, err
}

// Token is an API token's record (never its secret).
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Products  []string   `json:"products,omitempty"`
	Budget    int64      `json:"budget,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewToken asks for a token: a role (admin, publisher, release_manager,
// viewer, agent), optional product scope and lifetime ("720h").
type NewToken struct {
	Name     string   `json:"name"`
	Role     string   `json:"role"`
	Products []string `json:"products,omitempty"`
	// Budget: devices an agent token may newly expose per day and
	// deployment through MCP plans without a human's approval.
	Budget int64  `json:"budget,omitempty"`
	TTL    string `json:"ttl,omitempty"`
}

// CreateToken issues a token and returns its record and its secret, which
// the server does not keep.
func (c *Client) CreateToken(ctx context.Context, t NewToken) (Token, string, error) {
	var out struct {
		Token  Token  `json:"token"`
		Secret string `json:"secret"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, t, &out)
	return out.Token, out.Secret, err
}

// Tokens lists every token.
func (c *Client) Tokens(ctx context.Context) ([]Token, error) {
	var out struct {
		Tokens []Token `json:"tokens"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes a token at once.
func (c *Client) RevokeToken(ctx context.Context, id, reason string) (Token, error) {
	var out Token
	err := c.do(ctx, http.MethodPost, "/v1/tokens/"+url.PathEscape(id)+"/revoke", nil, reasonBody(reason), &out)
	return out, err
}

// Whoami describes the client's own token: role, scope and permissions.
type Whoami struct {
	TokenID     string   `json:"token_id"`
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Products    []string `json:"products"`
	Permissions []string `json:"permissions"`
}

// Whoami returns what the client's token may do.
func (c *Client) Whoami(ctx context.Context) (Whoami, error) {
	var out Whoami
	err := c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &out)
	return out, err
}

// EnrollmentKey is a fleet enrollment key's record.
type EnrollmentKey struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	CreatedBy string     `json:"created_by"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// MaxDevices, when positive, is how many devices the key may enroll;
	// Enrolled how many it has.
	MaxDevices int64 `json:"max_devices,omitempty"`
	Enrolled   int64 `json:"enrolled"`
}

// NewEnrollmentKey describes an enrollment key to issue.
type NewEnrollmentKey struct {
	Name string `json:"name"`
	TTL  string `json:"ttl,omitempty"`
	// MaxDevices caps how many devices the key enrolls (0: no quota).
	MaxDevices int64 `json:"max_devices,omitempty"`
}

// CreateEnrollmentKey issues an enrollment key; the secret is returned once.
func (c *Client) CreateEnrollmentKey(ctx context.Context, name, ttl string) (EnrollmentKey, string, error) {
	return c.IssueEnrollmentKey(ctx, NewEnrollmentKey{Name: name, TTL: ttl})
}

// IssueEnrollmentKey issues an enrollment key with options; the secret is
// returned once.
func (c *Client) IssueEnrollmentKey(ctx context.Context, k NewEnrollmentKey) (EnrollmentKey, string, error) {
	var out struct {
		Key    EnrollmentKey `json:"enrollment_key"`
		Secret string        `json:"secret"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/enrollment-keys", nil, k, &out)
	return out.Key, out.Secret, err
}

// EnrollmentKeys lists every enrollment key.
func (c *Client) EnrollmentKeys(ctx context.Context) ([]EnrollmentKey, error) {
	var out struct {
		Keys []EnrollmentKey `json:"enrollment_keys"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/enrollment-keys", nil, nil, &out)
	return out.Keys, err
}

// RevokeEnrollmentKey stops a key enrolling more devices.
func (c *Client) RevokeEnrollmentKey(ctx context.Context, id, reason string) (EnrollmentKey, error) {
	var out EnrollmentKey
	err := c.do(ctx, http.MethodPost, "/v1/enrollment-keys/"+url.PathEscape(id)+"/revoke", nil, reasonBody(reason), &out)
	return out, err
}

// RevokeDevice makes a device's credential worthless.
func (c *Client) RevokeDevice(ctx context.Context, deviceID, reason string) error {
	return c.do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/revoke", nil, reasonBody(reason), nil)
}

// ResetDevice starts a device's next credential generation: every
// credential it holds is refused, and it may enroll again with any valid
// key. It returns the new generation.
func (c *Client) ResetDevice(ctx context.Context, deviceID, reason string) (int64, error) {
	var out struct {
		Generation int64 `json:"generation"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/reset", nil, reasonBody(reason), &out)
	return out.Generation, err
}

// MenderDevice is a device that authenticates through the Mender device
// API, and whether it is accepted.
type MenderDevice struct {
	DeviceID    string            `json:"device_id"`
	Identity    map[string]string `json:"identity"`
	Status      string            `json:"status"`
	RequestedAt time.Time         `json:"requested_at"`
	DecidedBy   string            `json:"decided_by,omitempty"`
}

// AcceptDevice accepts a Mender device's pending authentication request.
func (c *Client) AcceptDevice(ctx context.Context, deviceID, reason string) (MenderDevice, error) {
	var out MenderDevice
	err := c.do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(deviceID)+"/accept", nil, reasonBody(reason), &out)
	return out, err
}

// MenderDevices lists the Mender devices in a status ("" for all).
func (c *Client) MenderDevices(ctx context.Context, status string) ([]MenderDevice, error) {
	var out struct {
		Devices []MenderDevice `json:"devices"`
	}
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	err := c.do(ctx, http.MethodGet, "/v1/mender/devices", q, nil, &out)
	return out.Devices, err
}

func reasonBody(reason string) any {
	if reason == "" {
		return nil
	}
	return map[string]string{"reason": reason}
}

// AuditEntry is one change in the audit log.
type AuditEntry struct {
	Seq    int64           `json:"seq"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Target string          `json:"target"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
	Reason string          `json:"reason,omitempty"`
	Prev   string          `json:"prev_hash"`
	Hash   string          `json:"hash"`
}

// AuditFilter selects audit entries (zero fields match everything; a
// trailing * in Actor or Action matches a prefix).
type AuditFilter struct {
	Actor, Action, Target string
	Since, Until          time.Time
	Before                int64
	Limit                 int
}

// Audit lists audit entries, newest first.
func (c *Client) Audit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	q := url.Values{}
	for k, v := range map[string]string{"actor": f.Actor, "action": f.Action, "target": f.Target} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339))
	}
	if f.Before > 0 {
		q.Set("before", strconv.FormatInt(f.Before, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out struct {
		Entries []AuditEntry `json:"entries"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/audit", q, nil, &out)
	return out.Entries, err
}

// AuditReport is the result of verifying the audit chain.
type AuditReport struct {
	Entries  int64    `json:"entries"`
	Head     string   `json:"head"`
	Problems []string `json:"problems"`
	Intact   bool     `json:"intact"`
}

// VerifyAudit recomputes the audit chain on the server; anchors are
// "SEQ:HASH" heads recorded from earlier verifications.
func (c *Client) VerifyAudit(ctx context.Context, anchors ...string) (AuditReport, error) {
	var out AuditReport
	err := c.do(ctx, http.MethodGet, "/v1/audit/verify", url.Values{"anchor": anchors}, nil, &out)
	return out, err
}

// TUFRole is one TUF role's newest metadata.
type TUFRole struct {
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	KeyIDs    []string  `json:"keyids"`
	Threshold int       `json:"threshold"`
	HeldKeys  int       `json:"held_keys"`
	// HeldKeyIDs are the keys the server holds (files KEYS_DIR/<id>.key).
	HeldKeyIDs []string `json:"held_keyids"`
}

// TUFStatus returns the repository's roles.
func (c *Client) TUFStatus(ctx context.Context) (map[string]TUFRole, error) {
	var out struct {
		Roles map[string]TUFRole `json:"roles"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/tuf-admin/status", nil, nil, &out)
	return out.Roles, err
}

// RotateResult is what an online-key rotation did: applied by the server,
// or a draft root to sign offline and push with PushRoot.
type RotateResult struct {
	Applied     bool   `json:"applied"`
	RootVersion int64  `json:"root_version"`
	Draft       []byte `json:"draft,omitempty"`
}

// RotateOnlineKeys replaces the targets, snapshot and timestamp keys.
func (c *Client) RotateOnlineKeys(ctx context.Context, reason string) (RotateResult, error) {
	var out RotateResult
	err := c.do(ctx, http.MethodPost, "/v1/tuf-admin/rotate-online", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// PushRoot installs a new root metadata file signed offline.
func (c *Client) PushRoot(ctx context.Context, root []byte, reason string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v1/tuf-admin/root", url.Values{"reason": {reason}}), bytes.NewReader(root))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Version int64 `json:"root_version"`
	}
	return out.Version, json.NewDecoder(resp.Body).Decode(&out)
}

// TUFRoot fetches the repository's current root.json (to pin on devices
// on first use, or to edit for a rotation).
func (c *Client) TUFRoot(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/tuf/root.json", nil), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(http.MaxBytesReader(nil, resp.Body, 512<<10))
	return buf.Bytes(), err
}

// Approval is an agent's request for a person to let a plan beyond its
// budget go ahead.
type Approval struct {
	ID        string     `json:"id"`
	PlanHash  string     `json:"plan_hash"`
	TokenID   string     `json:"token_id"`
	Action    string     `json:"action"`
	Target    string     `json:"target"`
	Exposure  int64      `json:"exposure"`
	Status    string     `json:"status"`
	Reason    string     `json:"reason"`
	Result    string     `json:"result,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	DecidedBy string     `json:"decided_by,omitempty"`
	DecidedAt *time.Time `json:"decided_at,omitempty"`
}

// Approvals lists approval requests (status "" for all).
func (c *Client) Approvals(ctx context.Context, status string) ([]Approval, error) {
	var out struct {
		Approvals []Approval `json:"approvals"`
	}
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	err := c.do(ctx, http.MethodGet, "/v1/approvals", q, nil, &out)
	return out.Approvals, err
}

// DecideApproval approves (which applies the plan as the agent's action)
// or denies a request.
func (c *Client) DecideApproval(ctx context.Context, id string, approve bool, reason string) (Approval, error) {
	decision := "deny"
	if approve {
		decision = "approve"
	}
	var out Approval
	err := c.do(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/"+decision, nil, reasonBody(reason), &out)
	return out, err
}

// MCPURL is the server's MCP endpoint (streamable HTTP).
func (c *Client) MCPURL() string { return c.url("/mcp", nil) }

// HTTPClient returns a copy of the client's HTTP client that sends its
// token on every request (for MCP transports).
func (c *Client) HTTPClient() *http.Client {
	hc := *c.http
	hc.Transport = bearer{token: c.token, next: c.http.Transport}
	return &hc
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	next := b.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}
