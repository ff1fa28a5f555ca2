// Package alerts tells people and systems when a rollout needs attention
// (a pause, a halt, a regression, an automatic hold) by POSTing to
// configured webhooks. Deliveries are durable jobs enqueued in the same
// transaction as the change they report, retried with backoff until the
// receiver answers 2xx, and signed with HMAC-SHA256.
package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/riverqueue/river"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/store"
)

// Kinds of alert.
const (
	DeploymentPaused = "deployment.paused"    // by a person or the health gate
	DeploymentHalted = "deployment.halted"    // emergency stop
	GateRegressed    = "deployment.regressed" // the health gate found a regression
	HoldCreated      = "hold.created"         // an automatic safeguard hold (active or proposed)
	HoldProposed     = "hold.proposed"        // an automatic hold waiting for a person
)

// Kinds lists every alert kind.
var Kinds = []string{DeploymentPaused, DeploymentHalted, GateRegressed, HoldCreated, HoldProposed}

// Webhook is a configured receiver.
type Webhook struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret signs deliveries: X-Ringmaster-Signature is
	// "sha256=" + hex(HMAC-SHA256(secret, body)).
	Secret string `yaml:"secret"`
	// Kinds filters what the webhook receives; empty means all.
	Kinds []string `yaml:"kinds"`
}

// Alert is what a webhook receives.
type Alert struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"`
	At           time.Time `json:"at"`
	DeploymentID string    `json:"deployment_id,omitempty"`
	HoldID       string    `json:"hold_id,omitempty"`
	Product      string    `json:"product,omitempty"`
	Version      string    `json:"version,omitempty"`
	Actor        string    `json:"actor,omitempty"`
	Summary      string    `json:"summary"`
}

// DeliverArgs is one delivery of an alert to one webhook (by name: the
// secret stays in the configuration, never in the job table).
type DeliverArgs struct {
	Webhook string `json:"webhook"`
	Alert   Alert  `json:"alert"`
}

func (DeliverArgs) Kind() string { return "alert_deliver" }

func (DeliverArgs) InsertOpts() river.InsertOpts {
	// About three days of retries with River's backoff.
	return river.InsertOpts{MaxAttempts: 20}
}

// Notifier enqueues and delivers alerts. Safe for concurrent use.
type Notifier struct {
	hooks  []Webhook
	client *river.Client[*sql.Tx]
	http   *http.Client
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	failures map[string]int64 // failed delivery attempts by webhook
}

// Failures returns the failed delivery attempts since start, by webhook
// (each is retried with backoff).
func (n *Notifier) Failures() map[string]int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]int64, len(n.hooks))
	for _, h := range n.hooks {
		out[h.Name] = n.failures[h.Name]
	}
	return out
}

// New returns a notifier for hooks. Register its worker, then SetClient.
func New(hooks []Webhook, log *slog.Logger, now func() time.Time) *Notifier {
	return &Notifier{hooks: hooks, http: &http.Client{Timeout: 10 * time.Second}, log: log, now: now}
}

// Validate checks webhook configuration.
func Validate(hooks []Webhook) error {
	seen := map[string]bool{}
	for i, h := range hooks {
		switch {
		case h.Name == "" || seen[h.Name]:
			return fmt.Errorf("webhooks[%d]: a unique name is required", i)
		case len(h.URL) < 8 || (h.URL[:7] != "http://" && h.URL[:8] != "https://"):
			return fmt.Errorf("webhooks[%d]: url must be http(s)", i)
		}
		for _, k := range h.Kinds {
			if !slices.Contains(Kinds, k) {
				return fmt.Errorf("webhooks[%d]: kind %q is not one of %v", i, k, Kinds)
			}
		}
		seen[h.Name] = true
	}
	return nil
}

// Register adds the delivery worker.
func (n *Notifier) Register(w *river.Workers) { river.AddWorker(w, &deliverWorker{n: n}) }

// SetClient gives the notifier the River client that enqueues deliveries.
func (n *Notifier) SetClient(c *river.Client[*sql.Tx]) { n.client = c }

// Enqueue schedules a delivery of a to every webhook that wants its kind,
// in tx, so the alert exists exactly when the change it reports commits.
func (n *Notifier) Enqueue(ctx context.Context, tx *store.Tx, a Alert) error {
	if a.ID == "" {
		a.ID = catalog.NewID("alr", n.now())
	}
	if a.At.IsZero() {
		a.At = n.now().UTC()
	}
	var jobs []river.InsertManyParams
	for _, h := range n.hooks {
		if len(h.Kinds) == 0 || slices.Contains(h.Kinds, a.Kind) {
			jobs = append(jobs, river.InsertManyParams{Args: DeliverArgs{Webhook: h.Name, Alert: a}})
		}
	}
	if len(jobs) == 0 || n.client == nil {
		return nil
	}
	_, err := n.client.InsertManyTx(ctx, tx.SQL(), jobs)
	return err
}

// Sign returns the signature header value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

type deliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	n *Notifier
}

func (w *deliverWorker) Timeout(*river.Job[DeliverArgs]) time.Duration { return 30 * time.Second }

func (w *deliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	err := w.deliver(ctx, job)
	if err != nil {
		w.n.mu.Lock()
		if w.n.failures == nil {
			w.n.failures = map[string]int64{}
		}
		w.n.failures[job.Args.Webhook]++
		w.n.mu.Unlock()
	}
	return err
}

func (w *deliverWorker) deliver(ctx context.Context, job *river.Job[DeliverArgs]) error {
	var hook *Webhook
	for i := range w.n.hooks {
		if w.n.hooks[i].Name == job.Args.Webhook {
			hook = &w.n.hooks[i]
		}
	}
	if hook == nil {
		w.n.log.Warn("alert for a webhook no longer configured; dropped", "webhook", job.Args.Webhook, "alert", job.Args.Alert.ID)
		return nil
	}
	body, err := json.Marshal(job.Args.Alert)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ringmaster-alerts")
	req.Header.Set("X-Ringmaster-Alert", job.Args.Alert.ID)
	req.Header.Set("X-Ringmaster-Delivery-Attempt", fmt.Sprint(job.Attempt))
	if hook.Secret != "" {
		req.Header.Set("X-Ringmaster-Signature", Sign(hook.Secret, body))
	}
	resp, err := w.n.http.Do(req)
	if err != nil {
		return fmt.Errorf("deliver alert %s to %s: %w", job.Args.Alert.ID, hook.Name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("deliver alert %s to %s: HTTP %d", job.Args.Alert.ID, hook.Name, resp.StatusCode)
	}
	return nil
}
