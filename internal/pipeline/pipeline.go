// Package pipeline runs publishing as durable jobs on River, in the same
// database as the catalog: each step commits its effect together with its
// job's completion and the next step's enqueue, so a crash at any point
// resumes where it stopped and does nothing twice.
//
// Steps: submit (all bytes received) → ingest each payload (verify size and
// SHA-256 again, move into the content store) → the organisation's added
// steps, in order (steps.go) → finalize (mark published).
// Publishing signs the update into the TUF targets and enqueues delta jobs
// (deltas.go) from the product's earlier versions.
package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/ringmaster/ringmaster/internal/audit"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"

	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/failpoint"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/formats"
	"github.com/ringmaster/ringmaster/internal/store"
)

// IngestArgs asks for one payload to be verified and stored.
type IngestArgs struct {
	UpdateID string `json:"update_id"`
	SHA256   string `json:"sha256"`
	Size     int64  `json:"size"`
	// Attempt is the update's publish attempt: a retry after a failure
	// is new work, not a duplicate of the completed jobs that failed.
	Attempt int `json:"attempt,omitempty"`
}

func (IngestArgs) Kind() string { return "publish_ingest" }

func (IngestArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 10, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// FinalizeArgs asks for an update whose payloads are all stored to be
// marked published.
type FinalizeArgs struct {
	UpdateID string `json:"update_id"`
	Attempt  int    `json:"attempt,omitempty"` // as in IngestArgs
}

func (FinalizeArgs) Kind() string { return "publish_finalize" }

func (FinalizeArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 25, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Config configures a Pipeline.
type Config struct {
	Store   *store.Store
	Content content.Store
	Log     *slog.Logger
	// IngestTimeout bounds one payload's verification, plus one second per
	// 20 MB. A job of a process that died is run again once this has passed
	// (River's rescuer honours per-kind timeouts), so it also sets how soon
	// an interrupted publish resumes.
	IngestTimeout time.Duration
	// Failpoints stop a step for crash tests: "ingest-stored" (blob moved,
	// not committed), "finalize" (payloads stored, not yet published) or
	// "delta-stored" (delta blobs written, not recorded).
	Failpoints failpoint.Set
	// Sign, when set, runs in the transaction that publishes an update
	// (to sign the update's payloads into the TUF repository), so an
	// update is published and signed together or not at all.
	Sign func(ctx context.Context, tx *store.Tx, updateID string) error
	// Deltas says which deltas to make after each publish.
	Deltas DeltaPolicy
	// GC configures content garbage collection.
	GC GCPolicy
	// Steps are checks the organisation adds between verification and
	// signing, run in order (steps.go).
	Steps []Step
}

// pipelineActor is who the audit log names for the pipeline's own steps.
const pipelineActor = "system:pipeline"

// Pipeline submits updates for publishing and works the jobs. Safe for
// concurrent use.
type Pipeline struct {
	cfg         Config
	client      *river.Client[*sql.Tx]
	onPublished func(updateID string)
	onChanged   func(updateID string)
}

// OnPublished sets a function called after each update is published. Call it
// before Start.
func (p *Pipeline) OnPublished(fn func(updateID string)) { p.onPublished = fn }

// OnChanged sets a function called after an update is withdrawn, deleted
// or given deltas: what devices are offered, and the TUF targets, changed.
func (p *Pipeline) OnChanged(fn func(updateID string)) { p.onChanged = fn }

// Withdraw withdraws a published update: in one transaction it is marked
// withdrawn (audited with the reason) and the TUF targets are signed again
// without its payloads, with a new snapshot and timestamp. Devices that
// installed it keep it; its content stays (they may still be downloading
// it). Withdrawing it again changes nothing.
func (p *Pipeline) Withdraw(ctx context.Context, updateID, reason string) (u catalog.Update, err error) {
	err = p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if u, err = tx.WithdrawUpdate(ctx, updateID, reason); err != nil {
			return err
		}
		return p.cfg.Sign(ctx, tx, updateID)
	})
	if err == nil && p.onChanged != nil {
		p.onChanged(updateID)
	}
	return u, err
}

// Delete deletes an update no deployment ever used (store.DeleteUpdate
// says when it may not): a published one leaves the signed TUF targets in
// the same transaction. Its staged uploads are discarded; stored content
// stays (another update may share it).
func (p *Pipeline) Delete(ctx context.Context, updateID string) (u catalog.Update, err error) {
	err = p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if u, err = tx.DeleteUpdate(ctx, updateID); err != nil || u.State != catalog.StatePublished {
			return err
		}
		return p.cfg.Sign(ctx, tx, updateID)
	})
	if err != nil {
		return u, err
	}
	if err := p.cfg.Content.Discard(ctx, updateID); err != nil {
		p.cfg.Log.Warn("discarding a deleted update's staged uploads failed", "update", updateID, "err", err)
	}
	if p.onChanged != nil {
		p.onChanged(updateID)
	}
	return u, nil
}

// New returns a Pipeline. Register its workers with the River client, then
// hand it the client with SetClient before submitting.
func New(cfg Config) *Pipeline { return &Pipeline{cfg: cfg} }

// Register adds the pipeline's job workers.
func (p *Pipeline) Register(w *river.Workers) {
	river.AddWorker(w, &ingestWorker{p: p})
	river.AddWorker(w, &finalizeWorker{p: p})
	river.AddWorker(w, &deltaWorker{p: p})
	river.AddWorker(w, &gcWorker{p: p})
	river.AddWorker(w, &stepWorker{p: p})
}

// SetClient gives the pipeline the River client that enqueues its jobs.
func (p *Pipeline) SetClient(c *river.Client[*sql.Tx]) { p.client = c }

// Submit starts publishing an update whose payloads have all been received.
// It is idempotent: an update already publishing or published is returned
// as it is. Missing payloads are a Conflict that names them.
func (p *Pipeline) Submit(ctx context.Context, updateID string) (u catalog.Update, err error) {
	err = p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if u, err = tx.Update(ctx, updateID); err != nil {
			return err
		}
		switch u.State {
		case catalog.StatePublishing, catalog.StatePublished:
			return nil
		case catalog.StateFailed:
			return fault.E(fault.Conflict, "update %s failed to publish (%s); create %s %s again (the same or corrected payloads) to retry it",
				u.ID, u.FailureReason, u.Product, u.Version)
		}
		var missing []string
		for i, pl := range u.Payloads {
			if pl.State != catalog.PayloadPending {
				continue
			}
			received, err := p.cfg.Content.UploadOffset(ctx, u.ID, pl.SHA256)
			if err != nil {
				return err
			}
			if received == pl.Size {
				// Every byte arrived but recording it failed (the database
				// was down at the last byte): record it now; ingest
				// verifies the bytes again.
				if err := tx.SetPayloadState(ctx, u.ID, pl.SHA256, catalog.PayloadPending, catalog.PayloadUploaded); err != nil {
					return err
				}
				u.Payloads[i].State = catalog.PayloadUploaded
				continue
			}
			missing = append(missing, pl.Name)
		}
		if len(missing) > 0 {
			return fault.E(fault.Conflict, "payloads not fully uploaded: %s", strings.Join(missing, ", "))
		}
		if err := tx.SetUpdateState(ctx, u.ID, catalog.StateAwaitingUpload, catalog.StatePublishing, ""); err != nil {
			return err
		}
		before := u.State
		u.State = catalog.StatePublishing
		if err := tx.Audit(ctx, audit.ActorFrom(ctx), audit.Change{Action: "update.publish", Target: u.ID,
			Before: map[string]any{"state": before}, After: map[string]any{"state": u.State}}); err != nil {
			return err
		}
		return p.enqueueNext(ctx, tx, u)
	})
	return u, err
}

// enqueueNext enqueues, in tx, ingest jobs for payloads not yet stored, or
// the finalize job when all are.
func (p *Pipeline) enqueueNext(ctx context.Context, tx *store.Tx, u catalog.Update) error {
	var jobs []river.InsertManyParams
	for _, pl := range u.Payloads {
		if pl.State != catalog.PayloadStored {
			jobs = append(jobs, river.InsertManyParams{Args: IngestArgs{UpdateID: u.ID, SHA256: pl.SHA256, Size: pl.Size, Attempt: u.Attempt}})
		}
	}
	if len(jobs) == 0 {
		return p.afterStored(ctx, tx, u)
	}
	_, err := p.client.InsertManyTx(ctx, tx.SQL(), jobs)
	return err
}

func complete[T river.JobArgs](ctx context.Context, tx *store.Tx, job *river.Job[T]) error {
	_, err := river.JobCompleteTx[riverdriver.Driver[*sql.Tx]](ctx, tx.SQL(), job)
	return err
}

type ingestWorker struct {
	river.WorkerDefaults[IngestArgs]
	p *Pipeline
}

func (w *ingestWorker) Timeout(job *river.Job[IngestArgs]) time.Duration {
	return w.p.cfg.IngestTimeout + time.Duration(job.Args.Size/(20<<20))*time.Second
}

func (w *ingestWorker) Work(ctx context.Context, job *river.Job[IngestArgs]) error {
	p, a := w.p, job.Args
	u, err := p.cfg.Store.Update(ctx, a.UpdateID)
	if err != nil {
		return err
	}
	if u.State != catalog.StatePublishing {
		return nil // failed meanwhile, or already done: nothing to do
	}
	digests, err := p.cfg.Content.Ingest(ctx, a.UpdateID, a.SHA256, a.Size)
	if err != nil {
		if fault.Is(err, fault.Invalid) || fault.Is(err, fault.NotFound) {
			return p.fail(ctx, job, u, fmt.Sprintf("payload %s: %s", a.SHA256, fault.Message(err)))
		}
		return err // transient: retried with backoff
	}
	if digests.Format, err = p.checkFormat(ctx, u, a.SHA256); err != nil {
		if fault.Is(err, fault.Invalid) {
			return p.fail(ctx, job, u, fault.Message(err))
		}
		return err
	}
	if err := p.cfg.Failpoints.Reach(ctx, "ingest-stored"); err != nil {
		return err
	}
	return p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		err := tx.StorePayload(ctx, a.UpdateID, a.SHA256, digests)
		if err != nil && !fault.Is(err, fault.Conflict) {
			return err
		}
		u, err := tx.Update(ctx, a.UpdateID)
		if err != nil {
			return err
		}
		done := true
		for _, pl := range u.Payloads {
			done = done && pl.State == catalog.PayloadStored
		}
		if done {
			if err := p.afterStored(ctx, tx, u); err != nil {
				return err
			}
		}
		return complete(ctx, tx, job)
	})
}

// checkFormat reads a stored payload whose name says it is of a format
// its product declares (a .swu for SWUpdate devices, say) and returns what
// its header says, or refuses it (Invalid) if it is not one, or would
// never install. Other payloads are opaque: nil.
func (p *Pipeline) checkFormat(ctx context.Context, u catalog.Update, sha string) (*catalog.PayloadFormat, error) {
	prod, err := p.cfg.Store.Product(ctx, u.Product)
	if err != nil || len(prod.Formats) == 0 {
		return nil, err
	}
	for _, pl := range u.Payloads {
		f := prod.FormatOf(pl.Name)
		if pl.SHA256 != sha || f == "" {
			continue
		}
		r, err := p.cfg.Content.Open(ctx, sha)
		if err != nil {
			return nil, err
		}
		info, err := formats.Check(f, r)
		r.Close()
		if err != nil {
			return nil, fault.E(fault.Invalid, "payload %s: %s", pl.Name, fault.Message(err))
		}
		return &catalog.PayloadFormat{Format: f, Signed: info.Signed, ArtifactName: info.ArtifactName, DeviceTypes: info.DeviceTypes}, nil
	}
	return nil, nil
}

// fail marks the update failed and completes the job: the failure is
// deterministic, so retrying would not help.
func (p *Pipeline) fail(ctx context.Context, job *river.Job[IngestArgs], u catalog.Update, reason string) error {
	p.cfg.Log.Warn("publish failed", "update", u.ID, "product", u.Product, "version", u.Version, "reason", reason)
	return p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetUpdateState(ctx, u.ID, catalog.StatePublishing, catalog.StateFailed, reason); err != nil {
			return err
		}
		if err := tx.Audit(ctx, pipelineActor, audit.Change{Action: "update.failed", Target: u.ID,
			After: map[string]any{"state": catalog.StateFailed}, Reason: reason}); err != nil {
			return err
		}
		return complete(ctx, tx, job)
	})
}

type finalizeWorker struct {
	river.WorkerDefaults[FinalizeArgs]
	p *Pipeline
}

func (w *finalizeWorker) Work(ctx context.Context, job *river.Job[FinalizeArgs]) error {
	p := w.p
	if err := p.cfg.Failpoints.Reach(ctx, "finalize"); err != nil {
		return err
	}
	err := p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		err := tx.SetUpdateState(ctx, job.Args.UpdateID, catalog.StatePublishing, catalog.StatePublished, "")
		switch {
		case fault.Is(err, fault.Conflict): // published by an earlier run of this job
		case err != nil:
			return err
		default:
			if p.cfg.Sign != nil {
				if err := p.cfg.Sign(ctx, tx, job.Args.UpdateID); err != nil {
					return err
				}
			}
			if err := tx.Audit(ctx, pipelineActor, audit.Change{Action: "update.published", Target: job.Args.UpdateID,
				After: map[string]any{"state": catalog.StatePublished}}); err != nil {
				return err
			}
			u, err := tx.Update(ctx, job.Args.UpdateID)
			if err != nil {
				return err
			}
			if err := p.enqueueDeltas(ctx, tx, u); err != nil {
				return err
			}
		}
		return complete(ctx, tx, job)
	})
	if err != nil {
		return err
	}
	if err := p.cfg.Content.Discard(ctx, job.Args.UpdateID); err != nil && !errors.Is(err, os.ErrNotExist) {
		p.cfg.Log.Warn("could not remove staged uploads", "update", job.Args.UpdateID, "err", err)
	}
	p.cfg.Log.Info("update published", "update", job.Args.UpdateID)
	if p.onPublished != nil {
		p.onPublished(job.Args.UpdateID)
	}
	return nil
}
