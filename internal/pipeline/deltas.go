package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/delta"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/version"
)

// DeltaPolicy says which deltas the pipeline makes after a publish.
type DeltaPolicy struct {
	// Versions is how many earlier published versions of a product get a
	// delta to each new one (0: none); Products overrides it per product.
	Versions int
	Products map[string]int
	// MaxShare: a delta at least this share of its payload's size is not
	// worth offering and is recorded as skipped.
	MaxShare float64
}

func (d DeltaPolicy) versions(product string) int {
	if k, ok := d.Products[product]; ok {
		return k
	}
	return d.Versions
}

// DeltaArgs asks for the deltas from one published update to a newer one.
type DeltaArgs struct {
	FromUpdateID string `json:"from_update_id"`
	ToUpdateID   string `json:"to_update_id"`
}

func (DeltaArgs) Kind() string { return "publish_delta" }

func (DeltaArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 10, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// enqueueDeltas enqueues, in the transaction that publishes u, a delta job
// from each of the product's previous published versions the policy asks
// for: they run after the publish, which they never slow or fail.
func (p *Pipeline) enqueueDeltas(ctx context.Context, tx *store.Tx, u catalog.Update) error {
	k := p.cfg.Deltas.versions(u.Product)
	if k <= 0 {
		return nil
	}
	v, err := version.Parse(u.Version)
	if err != nil {
		return err
	}
	earlier, err := tx.EarlierPublished(ctx, u.Product, v, k)
	if err != nil || len(earlier) == 0 {
		return err
	}
	jobs := make([]river.InsertManyParams, 0, len(earlier))
	for _, e := range earlier {
		jobs = append(jobs, river.InsertManyParams{Args: DeltaArgs{FromUpdateID: e.ID, ToUpdateID: u.ID}})
	}
	_, err = p.client.InsertManyTx(ctx, tx.SQL(), jobs)
	return err
}

type deltaWorker struct {
	river.WorkerDefaults[DeltaArgs]
	p *Pipeline
}

// Timeout leaves time for large payloads (zstd makes a delta of a 47 MB
// pair in about 2 s here); like the ingest timeout, it also sets how soon
// the job of a process that died runs again.
func (w *deltaWorker) Timeout(*river.Job[DeltaArgs]) time.Duration {
	return 5 * w.p.cfg.IngestTimeout
}

// Work makes the delta of each payload the two updates share by name and
// records it: blobs first (content-addressed, so a rerun after a crash
// rewrites the same bytes), then in one transaction the rows, the signed
// TUF targets that now list the ready deltas, and the job's completion.
func (w *deltaWorker) Work(ctx context.Context, job *river.Job[DeltaArgs]) error {
	p, a := w.p, job.Args
	from, err := p.cfg.Store.Update(ctx, a.FromUpdateID)
	if err != nil {
		return err
	}
	to, err := p.cfg.Store.Update(ctx, a.ToUpdateID)
	if err != nil {
		return err
	}
	var made []catalog.Delta
	if to.State == catalog.StatePublished && from.State == catalog.StatePublished {
		made, err = p.makeDeltas(ctx, from, to)
		if err != nil {
			return err
		}
	}
	if err := p.cfg.Failpoints.Reach(ctx, "delta-stored"); err != nil {
		return err
	}
	ready := 0
	err = p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
		for _, d := range made {
			if d.State == catalog.DeltaReady && !p.cfg.Content.Has(ctx, d.SHA256) {
				return fmt.Errorf("delta %s vanished before it was recorded; it is made again", d.SHA256)
			}
			added, err := tx.PutDelta(ctx, d)
			if err != nil {
				return err
			}
			if added && d.State == catalog.DeltaReady {
				ready++
			}
		}
		if ready > 0 {
			if err := tx.Audit(ctx, pipelineActor, audit.Change{Action: "update.deltas", Target: to.ID,
				After: map[string]any{"from": from.Version, "deltas": made}}); err != nil {
				return err
			}
			if p.cfg.Sign != nil {
				if err := p.cfg.Sign(ctx, tx, to.ID); err != nil {
					return err
				}
			}
		}
		return complete(ctx, tx, job)
	})
	if err == nil && ready > 0 {
		p.cfg.Log.Info("deltas made", "update", to.ID, "from", from.Version, "to", to.Version, "ready", ready)
		if p.onChanged != nil {
			p.onChanged(to.ID)
		}
	}
	return err
}

// makeDeltas makes and stores the delta of each payload the two updates
// share by name, or records why not.
func (p *Pipeline) makeDeltas(ctx context.Context, from, to catalog.Update) ([]catalog.Delta, error) {
	var out []catalog.Delta
	for _, np := range to.Payloads {
		for _, op := range from.Payloads {
			if op.Name != np.Name || op.SHA256 == np.SHA256 {
				continue
			}
			d := catalog.Delta{ToUpdateID: to.ID, FromUpdateID: from.ID, FromVersion: from.Version, Name: np.Name,
				FromSHA256: op.SHA256, ToSHA256: np.SHA256, State: catalog.DeltaSkipped}
			if op.Size > delta.MaxInput || np.Size > delta.MaxInput {
				d.Note = fmt.Sprintf("payloads over %d bytes get no delta", delta.MaxInput)
				out = append(out, d)
				continue
			}
			old, err := content.ReadAll(ctx, p.cfg.Content, op.SHA256, delta.MaxInput)
			if err != nil {
				return nil, err
			}
			nw, err := content.ReadAll(ctx, p.cfg.Content, np.SHA256, delta.MaxInput)
			if err != nil {
				return nil, err
			}
			b, err := delta.Make(old, nw)
			if err != nil {
				return nil, err
			}
			d.Size = int64(len(b))
			if share := float64(len(b)) / float64(len(nw)); share >= p.cfg.Deltas.MaxShare {
				d.Note = fmt.Sprintf("the delta is %.0f%% of the payload (limit %.0f%%)", 100*share, 100*p.cfg.Deltas.MaxShare)
				out = append(out, d)
				continue
			}
			if d.SHA256, err = p.cfg.Content.Put(ctx, b); err != nil {
				return nil, err
			}
			d.State = catalog.DeltaReady
			out = append(out, d)
		}
	}
	return out, nil
}
