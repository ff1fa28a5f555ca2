// Package client is the Go SDK for Ringmaster's HTTP API: publishing and
// deploying updates (with a bearer token) and the device side (check-in and
// verified, resumable downloads). The CLI and the tests use it too.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to one Ringmaster server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// New returns a client for the server at baseURL ("http://127.0.0.1:8080"),
// authenticating admin calls with token (may be empty for device calls).
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q must be http(s)://host[:port]", baseURL)
	}
	return &Client{base: u, token: token, http: &http.Client{Transport: defaultTransport}}, nil
}

// defaultTransport bounds every stage of a request except reading a body
// (payloads can be large on slow links): connecting, the TLS handshake,
// and waiting for the answer's headers.
var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   10 * time.Second,
	ResponseHeaderTimeout: time.Minute,
	ExpectContinueTimeout: time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   16,
	ForceAttemptHTTP2:     true,
}

// WithToken returns a copy of c that authenticates with token (an admin
// token, or a device credential for device calls).
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// WithHTTPClient returns a copy of c that uses hc for requests.
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cp := *c
	cp.http = hc
	return &cp
}

// Error is a problem document returned by the server.
type Error struct {
	Status    int    `json:"status"`
	Type      string `json:"type"`
	Title     string `json:"title"`
	Detail    string `json:"detail"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Detail, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Title, e.Status)
}

// Kind returns the problem kind ("not-found", "invalid", "conflict", …).
func (e *Error) Kind() string { return strings.TrimPrefix(e.Type, "urn:ringmaster:problem:") }

// IsKind reports whether err is a server problem of the given kind.
func IsKind(err error, kind string) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind() == kind
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path += path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// send adds the token and turns problem answers into *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		e := &Error{Status: resp.StatusCode, Title: resp.Status}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(b, e)
		e.Status = resp.StatusCode
		return nil, e
	}
	return resp, nil
}

// Product is a thing devices run.
type Product struct {
	Name        string   `json:"name"`
	Title       string   `json:"title,omitempty"`
	Description string   `json:"description,omitempty"`
	Floors      []string `json:"floors,omitempty"`
	// Formats names, per device dialect, the payload format its agents
	// install ({"ddi": "swu"}): publish checks payloads of that format
	// and requires one in every update.
	Formats map[string]string `json:"formats,omitempty"`
	// OmahaAppID is the app id Omaha clients name the product by (empty:
	// its name).
	OmahaAppID string    `json:"omaha_app_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// PutProduct creates a product or updates its title, description, floors,
// formats and Omaha app id (to what p says: empty ones are cleared).
func (c *Client) PutProduct(ctx context.Context, p Product) (Product, error) {
	var out Product
	err := c.do(ctx, http.MethodPut, "/v1/products/"+url.PathEscape(p.Name), nil,
		map[string]any{"title": p.Title, "description": p.Description, "floors": p.Floors, "formats": p.Formats, "omaha_app_id": p.OmahaAppID}, &out)
	return out, err
}

// Product fetches a product.
func (c *Client) Product(ctx context.Context, name string) (Product, error) {
	var out Product
	err := c.do(ctx, http.MethodGet, "/v1/products/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// Products lists products.
func (c *Client) Products(ctx context.Context) ([]Product, error) {
	var out struct {
		Products []Product `json:"products"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/products", nil, nil, &out)
	return out.Products, err
}

// NewPayload declares a payload of a new update.
type NewPayload struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// NewUpdate is what CreateUpdate sends.
type NewUpdate struct {
	Product        string       `json:"product"`
	Version        string       `json:"version"`
	Kind           string       `json:"kind,omitempty"`
	Classification string       `json:"classification,omitempty"`
	Severity       string       `json:"severity,omitempty"`
	Title          string       `json:"title,omitempty"`
	ReleaseNotes   string       `json:"release_notes,omitempty"`
	Applicability  string       `json:"applicability,omitempty"`
	Payloads       []NewPayload `json:"payloads"`
}

// Payload is a payload of an update as the server reports it.
type Payload struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	State  string `json:"state"`
	// SHA1 and MD5 (hex) are computed by the server once it stores the
	// payload.
	SHA1 string `json:"sha1,omitempty"`
	MD5  string `json:"md5,omitempty"`
	// Format is what publish read from a payload of a format its product
	// declares (nil for opaque files).
	Format        *PayloadFormat `json:"format,omitempty"`
	UploadURL     string         `json:"upload_url,omitempty"`
	ReceivedBytes int64          `json:"received_bytes"`
}

// PayloadFormat is what a payload's header says: its format, whether a
// .swu is signed, a Mender artifact's name and device types.
type PayloadFormat struct {
	Format       string   `json:"format"`
	Signed       bool     `json:"signed,omitempty"`
	ArtifactName string   `json:"artifact_name,omitempty"`
	DeviceTypes  []string `json:"device_types,omitempty"`
}

// Update is one version of a product.
type Update struct {
	ID             string     `json:"id"`
	Product        string     `json:"product"`
	Version        string     `json:"version"`
	Kind           string     `json:"kind"`
	Classification string     `json:"classification,omitempty"`
	Severity       string     `json:"severity"`
	Title          string     `json:"title,omitempty"`
	ReleaseNotes   string     `json:"release_notes,omitempty"`
	State          string     `json:"state"`
	FailureReason  string     `json:"failure_reason,omitempty"`
	Payloads       []Payload  `json:"payloads"`
	CreatedAt      time.Time  `json:"created_at"`
	PublishedAt    *time.Time `json:"published_at,omitempty"`
	WithdrawnAt    *time.Time `json:"withdrawn_at,omitempty"`
	WithdrawReason string     `json:"withdraw_reason,omitempty"`
	// Checks are the verdicts of the server's added pipeline steps, for
	// every publish attempt (on a single update only).
	Checks []StepCheck `json:"checks,omitempty"`
}

// CreateUpdate declares a new update. Creating the same update again (same
// version and content) returns the existing one.
func (c *Client) CreateUpdate(ctx context.Context, u NewUpdate) (Update, error) {
	var out Update
	err := c.do(ctx, http.MethodPost, "/v1/updates", nil, u, &out)
	return out, err
}

// Update fetches an update.
func (c *Client) Update(ctx context.Context, id string) (Update, error) {
	var out Update
	err := c.do(ctx, http.MethodGet, "/v1/updates/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// StepCheck is one pipeline step's verdict on one publish attempt.
type StepCheck struct {
	Step      string    `json:"step"`
	Attempt   int       `json:"attempt"`
	Verdict   string    `json:"verdict"`
	Output    string    `json:"output"`
	CheckedAt time.Time `json:"checked_at"`
}

// Delta is a delta the pipeline made to an update from an earlier
// version: ready (stored, signed, offered) or skipped (Note says why).
type Delta struct {
	ToUpdateID   string    `json:"to_update_id"`
	FromUpdateID string    `json:"from_update_id"`
	FromVersion  string    `json:"from_version"`
	Name         string    `json:"name"`
	FromSHA256   string    `json:"from_sha256"`
	ToSHA256     string    `json:"to_sha256"`
	SHA256       string    `json:"sha256,omitempty"`
	Size         int64     `json:"size,omitempty"`
	State        string    `json:"state"`
	Note         string    `json:"note,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
}

// GCReport is what a content garbage collection found and did.
type GCReport struct {
	DryRun       bool  `json:"dry_run"`
	Scanned      int   `json:"scanned"`
	ScannedBytes int64 `json:"scanned_bytes"`
	Referenced   int   `json:"referenced"`
	Young        int   `json:"young"`
	Removed      []struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"removed"`
	FreedBytes int64    `json:"freed_bytes"`
	Staged     []string `json:"staged"`
}

// CollectGarbage removes content no update or delta references (older
// than the server's grace period); with dryRun it only reports it.
func (c *Client) CollectGarbage(ctx context.Context, dryRun bool) (GCReport, error) {
	var out GCReport
	err := c.do(ctx, http.MethodPost, "/v1/content/gc", nil, map[string]bool{"dry_run": dryRun}, &out)
	return out, err
}

// DeleteProduct deletes a product with no updates and no holds.
func (c *Client) DeleteProduct(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/products/"+url.PathEscape(name), nil, nil, nil)
}

// UpdateDeltas lists the deltas made to an update.
func (c *Client) UpdateDeltas(ctx context.Context, id string) ([]Delta, error) {
	var out struct {
		Deltas []Delta `json:"deltas"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/updates/"+url.PathEscape(id)+"/deltas", nil, nil, &out)
	return out.Deltas, err
}

// Updates lists a product's updates (all products when product is empty).
func (c *Client) Updates(ctx context.Context, product string) ([]Update, error) {
	var out struct {
		Updates []Update `json:"updates"`
	}
	q := url.Values{}
	if product != "" {
		q.Set("product", product)
	}
	err := c.do(ctx, http.MethodGet, "/v1/updates", q, nil, &out)
	return out.Updates, err
}

// Publish starts the publishing pipeline for an update whose payloads have
// all been uploaded. Use WaitPublished to wait for it.
func (c *Client) Publish(ctx context.Context, updateID string) (Update, error) {
	var out Update
	err := c.do(ctx, http.MethodPost, "/v1/updates/"+url.PathEscape(updateID)+"/publish", nil, nil, &out)
	return out, err
}

// Withdraw withdraws a published update with a reason: no device is
// offered it any more, its payloads leave the signed TUF targets, and its
// live deployments are cancelled.
func (c *Client) Withdraw(ctx context.Context, updateID, reason string) (Update, error) {
	var out Update
	err := c.do(ctx, http.MethodPost, "/v1/updates/"+url.PathEscape(updateID)+"/withdraw", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// DeleteUpdate deletes an update no deployment ever used (a published one
// leaves the signed TUF targets).
func (c *Client) DeleteUpdate(ctx context.Context, updateID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/updates/"+url.PathEscape(updateID), nil, nil, nil)
}

// WaitPublished polls until the update is published (or failed, which is
// an error), or ctx ends.
func (c *Client) WaitPublished(ctx context.Context, updateID string, every time.Duration) (Update, error) {
	for {
		u, err := c.Update(ctx, updateID)
		if err != nil {
			return u, err
		}
		switch u.State {
		case "published":
			return u, nil
		case "failed":
			return u, fmt.Errorf("publishing %s %s failed: %s", u.Product, u.Version, u.FailureReason)
		}
		select {
		case <-ctx.Done():
			return u, ctx.Err()
		case <-time.After(every):
		}
	}
}

// Deployment rolls an update out to devices.
type Deployment struct {
	ID       string `json:"id"`
	UpdateID string `json:"update_id"`
	Product  string `json:"product"`
	Version  string `json:"version"`
	State    string `json:"state"`
	// Wave is the index of the current wave, counting from 0 (people
	// number waves from 1: index 0 is "wave 1"); -1 before the first
	// starts. WaveStarted is when it started.
	Wave        int       `json:"wave"`
	WaveStarted time.Time `json:"wave_started,omitzero"`
	Percent     float64   `json:"percent"`
	// Approved is the index of the last wave a person approved; -1 for none.
	Approved         int       `json:"approved"`
	AwaitingApproval bool      `json:"awaiting_approval,omitempty"`
	By               string    `json:"by,omitempty"`
	Reason           string    `json:"reason,omitempty"`
	Plan             Plan      `json:"plan"`
	CreatedBy        string    `json:"created_by"`
	CreatedAt        time.Time `json:"created_at"`
	UpdatedAt        time.Time `json:"updated_at"`
	// ProposedRollback, on a halted deployment not yet rolled back, is
	// the version Rollback would offer.
	ProposedRollback string `json:"proposed_rollback,omitempty"`
}

// MarshalJSON leaves out the wave and the approval while they are unset.
func (d Deployment) MarshalJSON() ([]byte, error) {
	type plain Deployment // without these methods
	return json.Marshal(struct {
		plain
		Wave     *int `json:"wave,omitempty"`
		Approved *int `json:"approved,omitempty"`
	}{plain(d), setIndex(d.Wave), setIndex(d.Approved)})
}

// UnmarshalJSON reads a deployment; a missing wave or approval is -1.
func (d *Deployment) UnmarshalJSON(b []byte) error {
	type plain Deployment
	p := plain{Wave: -1, Approved: -1}
	err := json.Unmarshal(b, &p)
	*d = Deployment(p)
	return err
}

func setIndex(i int) *int {
	if i < 0 {
		return nil
	}
	return &i
}

// Deploy makes a published version available to all devices of its product
// at once. Deploying it again returns the live deployment.
func (c *Client) Deploy(ctx context.Context, product, version string) (Deployment, error) {
	return c.DeployPlan(ctx, product, version, Plan{})
}

// Deployment fetches a deployment.
func (c *Client) Deployment(ctx context.Context, id string) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodGet, "/v1/deployments/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// Deployments lists deployments, newest first (all products when product
// is empty).
func (c *Client) Deployments(ctx context.Context, product string) ([]Deployment, error) {
	var out struct {
		Deployments []Deployment `json:"deployments"`
	}
	q := url.Values{}
	if product != "" {
		q.Set("product", product)
	}
	err := c.do(ctx, http.MethodGet, "/v1/deployments", q, nil, &out)
	return out.Deployments, err
}

// CancelDeployment stops offering a deployment's update for good.
func (c *Client) CancelDeployment(ctx context.Context, id, reason string) (Deployment, error) {
	return c.Command(ctx, id, "cancel", reason)
}
