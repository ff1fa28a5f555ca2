package pipeline

import (
	"context"
	"sort"
	"time"

	"github.com/riverqueue/river"

	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/content"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/store"
)

// GCPolicy configures content garbage collection.
type GCPolicy struct {
	// Interval between periodic collections (0: only on request).
	Interval time.Duration
	// Grace: a blob younger than this is kept even when nothing names it
	// (bytes just written by a job that has not committed yet, or just
	// claimed by a new declaration).
	Grace time.Duration
}

// GCReport is what one collection found and did.
type GCReport struct {
	DryRun       bool  `json:"dry_run"`
	Scanned      int   `json:"scanned"`
	ScannedBytes int64 `json:"scanned_bytes"`
	Referenced   int   `json:"referenced"`
	// Young counts unreferenced blobs kept for the grace period.
	Young int `json:"young"`
	// Removed lists the blobs removed (or, in a dry run, that would be).
	Removed    []GCBlob `json:"removed"`
	FreedBytes int64    `json:"freed_bytes"`
	// Staged lists staging directories of updates that no longer exist,
	// removed (or that would be).
	Staged []string `json:"staged"`
}

// GCBlob is one blob a collection removes.
type GCBlob struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// garbage decides which blobs to remove: those no payload or delta names
// and not modified since cutoff. It is a pure function.
func garbage(blobs []content.Blob, referenced map[string]bool, cutoff time.Time) (remove []content.Blob, young int) {
	for _, b := range blobs {
		switch {
		case referenced[b.SHA256]:
		case b.Modified.After(cutoff):
			young++
		default:
			remove = append(remove, b)
		}
	}
	sort.Slice(remove, func(i, j int) bool { return remove[i].SHA256 < remove[j].SHA256 })
	return remove, young
}

// CollectGarbage removes content no update or delta references: blobs
// older than the grace period, each checked again against the database
// right before it goes, and staging directories of deleted updates. With
// dryRun it only reports what it would remove. A removal is audited as
// content.gc by actor.
func (p *Pipeline) CollectGarbage(ctx context.Context, dryRun bool, actor string) (GCReport, error) {
	rep := GCReport{DryRun: dryRun, Removed: []GCBlob{}, Staged: []string{}}
	cutoff := time.Now().Add(-p.cfg.GC.Grace)
	var blobs []content.Blob
	err := p.cfg.Content.Blobs(ctx, func(sha string) error {
		b, err := p.cfg.Content.Stat(ctx, sha)
		if fault.Is(err, fault.NotFound) || fault.Is(err, fault.Invalid) {
			return nil // removed meanwhile, or not a blob of ours
		}
		blobs = append(blobs, b)
		rep.ScannedBytes += b.Size
		return err
	})
	if err != nil {
		return rep, err
	}
	referenced, err := p.cfg.Store.ReferencedBlobs(ctx)
	if err != nil {
		return rep, err
	}
	rep.Scanned = len(blobs)
	for _, b := range blobs {
		if referenced[b.SHA256] {
			rep.Referenced++
		}
	}
	remove, young := garbage(blobs, referenced, cutoff)
	rep.Young = young
	for _, b := range remove {
		// Checked again: an update declared since the listing may claim
		// these bytes (and touches them), a delta job may record them.
		if ref, err := p.cfg.Store.BlobReferenced(ctx, b.SHA256); err != nil || ref {
			if err != nil {
				return rep, err
			}
			continue
		}
		if now, err := p.cfg.Content.Stat(ctx, b.SHA256); err != nil || now.Modified.After(cutoff) {
			continue
		}
		if !dryRun {
			if err := p.cfg.Content.Remove(ctx, b.SHA256); err != nil {
				return rep, err
			}
			if err := p.cfg.Failpoints.Reach(ctx, "gc-removed"); err != nil {
				return rep, err
			}
		}
		rep.Removed = append(rep.Removed, GCBlob{SHA256: b.SHA256, Size: b.Size})
		rep.FreedBytes += b.Size
	}
	if err := p.staleStaging(ctx, dryRun, cutoff, &rep); err != nil {
		return rep, err
	}
	if !dryRun && (len(rep.Removed) > 0 || len(rep.Staged) > 0) {
		err = p.cfg.Store.InTx(ctx, func(tx *store.Tx) error {
			return tx.Audit(ctx, actor, audit.Change{Action: "content.gc", Target: "content",
				After: map[string]any{"removed": len(rep.Removed), "freed_bytes": rep.FreedBytes, "staged": rep.Staged}})
		})
		p.cfg.Log.Info("content garbage collected", "removed", len(rep.Removed), "freed_bytes", rep.FreedBytes, "staged", len(rep.Staged))
	}
	return rep, err
}

// staleStaging removes the staging directories of updates that no longer
// exist (deleted while an upload was staged) once they are past the grace
// period; uploads of existing updates are never touched.
func (p *Pipeline) staleStaging(ctx context.Context, dryRun bool, cutoff time.Time, rep *GCReport) error {
	staged, err := p.cfg.Content.Staged(ctx)
	if err != nil {
		return err
	}
	for _, st := range staged {
		id := st.UpdateID
		_, err := p.cfg.Store.Update(ctx, id)
		switch {
		case err == nil:
			continue
		case !fault.Is(err, fault.NotFound):
			return err
		}
		if st.Modified.After(cutoff) {
			continue
		}
		if !dryRun {
			if err := p.cfg.Content.Discard(ctx, id); err != nil {
				return err
			}
		}
		rep.Staged = append(rep.Staged, id)
	}
	return nil
}

// GCArgs runs a periodic content garbage collection.
type GCArgs struct{}

func (GCArgs) Kind() string { return "content_gc" }

type gcWorker struct {
	river.WorkerDefaults[GCArgs]
	p *Pipeline
}

func (w *gcWorker) Work(ctx context.Context, _ *river.Job[GCArgs]) error {
	_, err := w.p.CollectGarbage(ctx, false, pipelineActor)
	return err
}

// PeriodicJobs returns the periodic garbage collection, enqueued by the
// leader only (none when the interval is 0).
func (p *Pipeline) PeriodicJobs() []*river.PeriodicJob {
	if p.cfg.GC.Interval <= 0 {
		return nil
	}
	opts := &river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: p.cfg.GC.Interval}}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(p.cfg.GC.Interval),
		func() (river.JobArgs, *river.InsertOpts) { return GCArgs{}, opts }, &river.PeriodicJobOpts{ID: "content_gc"})}
}
