package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"

	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/store"
)

// Step is a check an organisation adds to publishing, run as a durable
// job between verification and signing: a command (a malware scanner,
// say) or a webhook. Its verdict, with its output, is stored on the
// update and in the audit log; a failing verdict fails the publish.
type Step struct {
	Name string
	// Command is run with each payload's stored file appended as an
	// argument. Exit 0 passes, an exit code in FailCodes (default 1: what
	// clamscan and most checkers use for "found something") fails, and
	// anything else is an error: the step runs again with backoff.
	Command   []string
	FailCodes []int
	// URL is POSTed the update as JSON, signed like alert webhooks
	// (X-Ringmaster-Signature: sha256=HMAC-SHA256(Secret, body)); it must
	// answer 2xx with {"verdict": "pass" or "fail", "detail": "…"}.
	// Anything else is an error: the step runs again with backoff.
	URL    string
	Secret string
	// Timeout bounds one run (default 5m); 10 s after it, the step of a
	// process that died runs again on another.
	Timeout time.Duration
	// Attempts is how many times an erroring step runs before the publish
	// fails (default 5).
	Attempts int
}

// MaxStepOutput bounds the output a verdict keeps.
const MaxStepOutput = 4 << 10

func (s Step) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 5 * time.Minute
}

func (s Step) attempts() int {
	if s.Attempts > 0 {
		return s.Attempts
	}
	return 5
}

// StepArgs runs step Index of the configured steps on an update's publish
// attempt.
type StepArgs struct {
	UpdateID string `json:"update_id"`
	Attempt  int    `json:"attempt,omitempty"`
	Index    int    `json:"index"`
	Step     string `json:"step"`
}

func (StepArgs) Kind() string { return "publish_step" }

// afterStored enqueues, in tx, what follows an update whose payloads are
// all stored: the first added step, or the finalize job.
func (p *Pipeline) afterStored(ctx context.Context, tx *store.Tx, u catalog.Update) error {
	return p.enqueueStep(ctx, tx, u, 0)
}

func (p *Pipeline) enqueueStep(ctx context.Context, tx *store.Tx, u catalog.Update, i int) error {
	var err error
	if i < len(p.cfg.Steps) {
		s := p.cfg.Steps[i]
		_, err = p.client.InsertTx(ctx, tx.SQL(), StepArgs{UpdateID: u.ID, Attempt: u.Attempt, Index: i, Step: s.Name},
			&river.InsertOpts{MaxAttempts: s.attempts(), UniqueOpts: river.UniqueOpts{ByArgs: true}})
	} else {
		_, err = p.client.InsertTx(ctx, tx.SQL(), FinalizeArgs{UpdateID: u.ID, Attempt: u.Attempt}, nil)
	}
	return err
}

type stepWorker struct {
	river.WorkerDefaults[StepArgs]
	p *Pipeline
}

func (w *stepWorker) Timeout(job *river.Job[StepArgs]) time.Duration {
	if job.Args.Index < len(w.p.cfg.Steps) {
		return w.p.cfg.Steps[job.Args.Index].timeout() + 10*time.Second
	}
	return time.Minute
}

// Work runs the step and records its verdict together with the job's
// completion and what follows (the next step, the finalize job, or the
// failed publish): a process killed while the step runs runs it again,
// and one verdict is recorded.
func (w *stepWorker) Work(ctx context.Context, job *river.Job[StepArgs]) error {
	p, a := w.p, job.Args
	u, err := p.cfg.Store.Update(ctx, a.UpdateID)
	if err != nil {
		return err
	}
	if u.State != catalog.StatePublishing || u.Attempt != a.Attempt {
		return nil // failed meanwhile, or a later attempt's work
	}
	if a.Index >= len(p.cfg.Steps) || p.cfg.Steps[a.Index].Name != a.Step {
		// The configured steps changed under a publish: go on from the
		// step of that name, if it is still configured.
		i := slices.IndexFunc(p.cfg.Steps, func(s Step) bool { return s.Name == a.Step })
		if i < 0 {
			return p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
				if err := p.enqueueStep(ctx, tx, u, len(p.cfg.Steps)); err != nil {
					return err
				}
				return complete(ctx, tx, job)
			})
		}
		a.Index = i
	}
	step := p.cfg.Steps[a.Index]
	rctx, cancel := context.WithTimeout(ctx, step.timeout())
	verdict, output, err := p.runStep(rctx, step, u)
	cancel()
	if err != nil {
		if job.Attempt < step.attempts() {
			return fmt.Errorf("step %s: %w", step.Name, err) // retried with backoff
		}
		verdict, output = "fail", fmt.Sprintf("the step could not run (%d attempts): %v", job.Attempt, err)
	}
	if err := p.cfg.Failpoints.Reach(ctx, "step-ran"); err != nil {
		return err
	}
	output = clipOutput(output)
	return p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		err := tx.RecordCheck(ctx, u.ID, catalog.Check{Step: step.Name, Attempt: u.Attempt, Verdict: verdict, Output: output})
		if fault.Is(err, fault.Conflict) {
			return complete(ctx, tx, job) // recorded by an earlier run whose completion was lost
		}
		if err != nil {
			return err
		}
		if err := tx.Audit(ctx, pipelineActor, audit.Change{Action: "update.check", Target: u.ID,
			After: map[string]any{"step": step.Name, "attempt": u.Attempt, "verdict": verdict, "output": output}}); err != nil {
			return err
		}
		if verdict == "fail" {
			reason := fmt.Sprintf("step %s failed: %s", step.Name, oneLine(output))
			if err := tx.SetUpdateState(ctx, u.ID, catalog.StatePublishing, catalog.StateFailed, reason); err != nil {
				return err
			}
			if err := tx.Audit(ctx, pipelineActor, audit.Change{Action: "update.failed", Target: u.ID,
				After: map[string]any{"state": catalog.StateFailed}, Reason: reason}); err != nil {
				return err
			}
			p.cfg.Log.Warn("publish failed", "update", u.ID, "product", u.Product, "version", u.Version, "reason", reason)
		} else if err := p.enqueueStep(ctx, tx, u, a.Index+1); err != nil {
			return err
		}
		return complete(ctx, tx, job)
	})
}

// runStep runs one step on an update: its verdict ("pass" or "fail") and
// output, or an error when it could not judge.
func (p *Pipeline) runStep(ctx context.Context, s Step, u catalog.Update) (verdict, output string, err error) {
	if len(s.Command) > 0 {
		return p.runCommand(ctx, s, u)
	}
	return p.runWebhook(ctx, s, u)
}

func (p *Pipeline) runCommand(ctx context.Context, s Step, u catalog.Update) (string, string, error) {
	args := slices.Clone(s.Command[1:])
	for _, pl := range u.Payloads {
		path, done, err := p.cfg.Content.LocalFile(ctx, pl.SHA256)
		if err != nil {
			return "", "", err
		}
		defer done()
		args = append(args, path)
	}
	cmd := exec.CommandContext(ctx, s.Command[0], args...)
	cmd.Env = append(cmd.Environ(), "RINGMASTER_UPDATE_ID="+u.ID, "RINGMASTER_PRODUCT="+u.Product, "RINGMASTER_VERSION="+u.Version)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return "pass", out.String(), nil
	case errors.As(err, &exit) && slices.Contains(failCodes(s), exit.ExitCode()):
		return "fail", out.String(), nil
	case errors.As(err, &exit):
		return "", "", fmt.Errorf("%s exited with %d: %s", s.Command[0], exit.ExitCode(), oneLine(clipOutput(out.String())))
	}
	return "", "", err
}

func failCodes(s Step) []int {
	if len(s.FailCodes) > 0 {
		return s.FailCodes
	}
	return []int{1}
}

// StepRequest is what a webhook step is sent.
type StepRequest struct {
	UpdateID string        `json:"update_id"`
	Product  string        `json:"product"`
	Version  string        `json:"version"`
	Kind     catalog.Kind  `json:"kind"`
	Attempt  int           `json:"attempt"`
	Step     string        `json:"step"`
	Payloads []StepPayload `json:"payloads"`
}

// StepPayload is one payload in a StepRequest; URL is the content path
// on this server.
type StepPayload struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	URL    string `json:"url"`
}

func (p *Pipeline) runWebhook(ctx context.Context, s Step, u catalog.Update) (string, string, error) {
	body := StepRequest{UpdateID: u.ID, Product: u.Product, Version: u.Version, Kind: u.Kind, Attempt: u.Attempt, Step: s.Name}
	for _, pl := range u.Payloads {
		body.Payloads = append(body.Payloads, StepPayload{Name: pl.Name, SHA256: pl.SHA256, Size: pl.Size, URL: "/v1/content/" + pl.SHA256})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(b))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Ringmaster-Step", s.Name)
	if s.Secret != "" {
		req.Header.Set("X-Ringmaster-Signature", alerts.Sign(s.Secret, b))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", "", fmt.Errorf("webhook answered %s: %s", resp.Status, oneLine(clipOutput(string(rb))))
	}
	var ans struct {
		Verdict string `json:"verdict"`
		Detail  string `json:"detail"`
	}
	if err := json.Unmarshal(rb, &ans); err != nil || (ans.Verdict != "pass" && ans.Verdict != "fail") {
		return "", "", fmt.Errorf(`webhook answer is not {"verdict": "pass" or "fail", "detail": "…"}: %s`, oneLine(clipOutput(string(rb))))
	}
	return ans.Verdict, ans.Detail, nil
}

func clipOutput(s string) string {
	if len(s) > MaxStepOutput {
		return s[:MaxStepOutput] + "…"
	}
	return s
}

// oneLine is output fit for a failure reason: lines joined, trimmed.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
