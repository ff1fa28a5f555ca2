package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/internal/bench"
	"github.com/ringmaster/ringmaster/internal/duration"
)

func benchCmd(g *globals) *cobra.Command {
	var cpuProfile string
	var profile *os.File
	cmd := &cobra.Command{Use: "bench", Short: "Measure hot paths against a same-run baseline",
		// --cpuprofile covers the whole run, server and load generator.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if cpuProfile == "" {
				return nil
			}
			f, err := os.Create(cpuProfile)
			if err != nil {
				return err
			}
			profile = f
			return pprof.StartCPUProfile(f)
		},
		PersistentPostRunE: func(*cobra.Command, []string) error {
			if profile == nil {
				return nil
			}
			pprof.StopCPUProfile()
			return profile.Close()
		},
	}
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	var cfg bench.CheckinConfig
	var asJSON, useURL bool
	checkin := &cobra.Command{
		Use:   "checkin",
		Short: "Drive simulated device check-ins and compare with a bare net/http handler",
		Long: `Drive simulated device check-ins and compare with a baseline.

--url points it at a running server, or at several replicas at once
(comma-separated): requests go round-robin, and the first replica alone is
measured in the same rounds. Without --url it starts a server in-process (SQLite in a temporary directory)
seeded with --products × --versions published updates, --deployments of them
deployed in two waves (the first at a random percentage; a third with an
audience rule) and --holds safeguard holds. The
baseline is a bare net/http handler returning a fixed JSON body of the same
average size, measured through the same HTTP stack and client in the same
run; phases alternate (--rounds). It reports check-ins per second,
p50/p99/p99.9 latency, allocations per request (whole process, client
included) and the throughput ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if useURL = cmd.Flags().Changed("url"); useURL {
				cfg.URL = g.url
			}
			log, progress := g.benchOutput()
			cfg.Progress = progress
			fmt.Fprintf(g.stderr, "check-in benchmark: %d devices, concurrency %d, %d rounds of %s per phase\n",
				cfg.Devices, cfg.Concurrency, cfg.Rounds, cfg.Duration)
			rep, err := bench.RunCheckin(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rep)
			}
			rows := []bench.Result{rep.Baseline, rep.Ringmaster}
			if rep.Single != nil {
				rows = append(rows, *rep.Single)
			}
			if err := printResults(g, "requests/s", rows, true); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "offers per check-in: %.2f\n", rep.Ringmaster.OffersPerReq)
			fmt.Fprintf(g.stdout, "ratio (ringmaster / baseline throughput): %.2f\n", rep.Ratio)
			if rep.Single != nil {
				fmt.Fprintf(g.stdout, "replicas together / first replica alone: %.2f (on one machine the replicas share its cores: this is overhead, not scaling)\n",
					rep.Ringmaster.PerSecond/rep.Single.PerSecond)
			}
			if !useURL { // with --url the server's allocations are in another process
				fmt.Fprintf(g.stdout, "server allocations per check-in beyond the baseline: %.1f\n", rep.Ringmaster.AllocsPerReq-rep.Baseline.AllocsPerReq)
			}
			return nil
		},
	}
	f := checkin.Flags()
	f.IntVar(&cfg.Devices, "devices", 10000, "simulated devices (N)")
	f.IntVar(&cfg.Concurrency, "concurrency", 32, "concurrent clients (C)")
	cfg.Duration = 5 * time.Second
	f.Var((*duration.Value)(&cfg.Duration), "duration", "length of each measured phase (D)")
	f.IntVar(&cfg.Rounds, "rounds", 2, "alternating baseline/ringmaster rounds")
	f.IntVar(&cfg.Products, "products", 50, "products in the seeded catalog")
	f.IntVar(&cfg.Versions, "versions", 20, "published versions per product")
	f.IntVar(&cfg.Deployments, "deployments", 1000, "deployments of the newest versions (two waves each)")
	f.IntVar(&cfg.Holds, "holds", 0, "safeguard holds on two-attribute cohorts")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed for the device population")
	f.StringVar(&cfg.Database, "database", "", "in-process server's database: empty for SQLite, or a postgres:// URL on whose server a fresh database is created and dropped")
	f.StringVar(&cfg.Protocol, "protocol", "native", "what the devices speak: native (POST /v1/device/check), omaha (POST /v1/update/, update_engine's protocol), ddi (a hawkBit DDI poll, SWUpdate's and RAUC's protocol) or mender (a Mender client's deployments/next)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(checkin, eventsBenchCmd(g), deltasBenchCmd(g))
	return cmd
}

func deltasBenchCmd(g *globals) *cobra.Command {
	var cfg bench.DeltasConfig
	var pairs []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "deltas [--pair OLD,NEW]...",
		Short: "Measure making and applying payload deltas against compressing the payload alone",
		Long: `Make and apply zstd patch-from deltas as the pipeline and the SDK updater do,
for each --pair of an old and a new file (without one, it builds two
versions of a small Go service with the go command). For each pair it
reports the delta's size as a share of the new file, next to the baseline
measured in the same run: the new file compressed alone at the same level.
Generation, apply and compression times are the fastest of --rounds; memory
is the Go heap's peak while making and applying.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range pairs {
				old, new, ok := strings.Cut(p, ",")
				if !ok || old == "" || new == "" {
					return fmt.Errorf("--pair %q: want OLD,NEW", p)
				}
				cfg.Pairs = append(cfg.Pairs, [2]string{old, new})
			}
			_, cfg.Progress = g.benchOutput()
			rep, err := bench.RunDeltas(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rep)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintf(tw, "pair	new MB	delta MB	delta share	compressed alone	generate	apply	compress	gen heap MB	apply heap MB	\n")
			for _, r := range rep.Pairs {
				fmt.Fprintf(tw, "%s\t%.1f\t%.2f\t%.1f%%\t%.1f%%\t%s\t%s\t%s\t%.0f\t%.0f\t\n", filepath.Base(r.Old)+" -> "+filepath.Base(r.New),
					mb(r.NewBytes), mb(r.DeltaBytes), 100*r.DeltaShare, 100*r.CompressedShare, round(r.Generate), round(r.Apply), round(r.Compress),
					mb(int64(r.GeneratePeakBytes)), mb(int64(r.ApplyPeakBytes)))
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&pairs, "pair", nil, "old and new file, comma-separated (repeatable)")
	f.IntVar(&cfg.Rounds, "rounds", 3, "measure each pair this many times; report the fastest")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

func eventsBenchCmd(g *globals) *cobra.Command {
	var cfg bench.EventsConfig
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Measure event ingestion and aggregation against a same-run baseline",
		Long: `Start a server in-process (SQLite, embedded NATS) seeded like "bench checkin",
POST batches of device events to /v1/device/events from concurrent clients, and
compare with a bare net/http handler that reads the same bodies and answers a
fixed body of the same size (phases alternate). Then publish --aggregate fresh
events to the event log and time until the aggregator has counted them all in
the database. Last, the whole path at once: fresh events posted for one phase
while the aggregator counts them, timed until the last is counted. Request bodies cycle through 2,000 distinct batches; a repeat is
stored and counts nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, progress := g.benchOutput()
			cfg.Progress = progress
			fmt.Fprintf(g.stderr, "events benchmark: batches of %d, concurrency %d, %d rounds of %s per phase\n",
				cfg.BatchSize, cfg.Concurrency, cfg.Rounds, cfg.Duration)
			rep, err := bench.RunEvents(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rep)
			}
			if err := printResults(g, "batches/s", []bench.Result{rep.Baseline, rep.Ringmaster}, false); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "events accepted per second: %.0f\n", rep.EventsPerSecond)
			fmt.Fprintf(g.stdout, "ratio (ringmaster / baseline throughput): %.2f\n", rep.Ratio)
			fmt.Fprintf(g.stdout, "aggregated end to end (publish -> counted in the database, %s): %.0f events/s over %d events\n",
				rep.Engine, rep.AggregatedPerSecond, rep.AggregateEvents)
			fmt.Fprintf(g.stdout, "counted from the log alone / accepted (counting meanwhile): %.2f\n", rep.CountedToAccepted)
			fmt.Fprintf(g.stdout, "aggregator backlog (published - counted) over time: %s\n", lagLine(rep.Lag))
			e := rep.EndToEnd
			fmt.Fprintf(g.stdout, "end to end (HTTP -> event log -> counted in the database, at once, %s): %.0f events/s; %d accepted at %.0f/s over %.1fs (%d new outcomes), the last counted %.1fs after posting stopped\n",
				rep.Engine, e.PerSecond, e.Accepted, e.AcceptedPerSecond, e.PostedSeconds, e.Counted, e.DrainSeconds)
			fmt.Fprintf(g.stdout, "counted / accepted, at once: %.2f\n", e.CountedToAccepted)
			fmt.Fprintf(g.stdout, "accepted at once / baseline (fresh bodies only): %.3f\n", e.AcceptRatio)
			fmt.Fprintf(g.stdout, "allocations per event accepted: %.1f (baseline %.1f)\n", rep.AllocsPerEvent, rep.BaselineAllocsPerEvent)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Devices, "devices", 10000, "distinct devices reporting")
	f.IntVar(&cfg.Concurrency, "concurrency", 16, "concurrent clients")
	cfg.Duration = 5 * time.Second
	f.Var((*duration.Value)(&cfg.Duration), "duration", "length of each measured phase")
	f.IntVar(&cfg.Rounds, "rounds", 2, "alternating baseline/ringmaster rounds")
	f.IntVar(&cfg.BatchSize, "batch", 100, "events per request")
	f.IntVar(&cfg.Aggregate, "aggregate", 200000, "events timed through the aggregator")
	f.IntVar(&cfg.Products, "products", 10, "products in the seeded catalog")
	f.IntVar(&cfg.Versions, "versions", 5, "published versions per product")
	f.IntVar(&cfg.Deployments, "deployments", 20, "deployments the events belong to")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	f.StringVar(&cfg.Database, "database", "", "in-process server's database: empty for SQLite, or a postgres:// URL on whose server a fresh database is created and dropped")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// lagLine summarizes the aggregator's backlog in about ten samples (every
// one is in --json).
func lagLine(lag []bench.LagSample) string {
	var parts []string
	step := max(1, len(lag)/10)
	for i := 0; i < len(lag); i += step {
		parts = append(parts, fmt.Sprintf("%.1fs %d", lag[i].Seconds, lag[i].Backlog()))
	}
	if n := len(lag); n > 0 && (n-1)%step != 0 {
		parts = append(parts, fmt.Sprintf("%.1fs %d", lag[n-1].Seconds, lag[n-1].Backlog()))
	}
	return strings.Join(parts, ", ")
}

// benchOutput is where a benchmark talks: progress lines on stderr, and
// the throwaway in-process server's log only for errors (its first-start
// notes about signing keys are not results), so stdout holds the report.
func (g *globals) benchOutput() (*slog.Logger, func(string)) {
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	start := time.Now()
	return log, func(msg string) { fmt.Fprintf(g.stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), msg) }
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// printResults prints benchmark results as a table, with the first error of
// each side if any.
func printResults(g *globals, rateName string, rs []bench.Result, withBytes bool) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	bytesCol := ""
	if withBytes {
		bytesCol = "\tbytes/resp"
	}
	fmt.Fprintf(tw, "\t%s\tp50\tp99\tp99.9\tallocs/req%s\terrors\t\n", rateName, bytesCol)
	for _, r := range rs {
		b := ""
		if withBytes {
			b = fmt.Sprintf("\t%.0f", r.BytesPerResp)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f%s\t%d\t\n", r.Name, r.PerSecond, round(r.P50), round(r.P99), round(r.P999), r.AllocsPerReq, b, r.Errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rs {
		if r.FirstError != "" {
			fmt.Fprintf(g.stdout, "%s: first error: %s\n", r.Name, r.FirstError)
		}
	}
	return nil
}
