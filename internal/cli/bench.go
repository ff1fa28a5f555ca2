package cli

import (
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/internal/bench"
)

func benchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure hot paths against a same-run baseline"}
	var cfg bench.CheckinConfig
	var asJSON, useURL bool
	checkin := &cobra.Command{
		Use:   "checkin",
		Short: "Drive simulated device check-ins and compare with a bare net/http handler",
		Long: `Drive simulated device check-ins and compare with a baseline.

Without --url it starts a server in-process (SQLite in a temporary directory)
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
			log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			fmt.Fprintf(g.stderr, "check-in benchmark: %d devices, concurrency %d, %d rounds of %s per phase\n",
				cfg.Devices, cfg.Concurrency, cfg.Rounds, cfg.Duration)
			rep, err := bench.RunCheckin(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rep)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "\trequests/s\tp50\tp99\tp99.9\tallocs/req\tbytes/resp\terrors\t")
			for _, r := range []bench.Result{rep.Baseline, rep.Ringmaster} {
				fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f\t%.0f\t%d\t\n", r.Name, r.PerSecond, round(r.P50), round(r.P99),
					round(r.P999), r.AllocsPerReq, r.BytesPerResp, r.Errors)
			}
			tw.Flush()
			for _, r := range []bench.Result{rep.Baseline, rep.Ringmaster} {
				if r.FirstError != "" {
					fmt.Fprintf(g.stdout, "%s: first error: %s\n", r.Name, r.FirstError)
				}
			}
			fmt.Fprintf(g.stdout, "offers per check-in: %.2f\n", rep.Ringmaster.OffersPerReq)
			fmt.Fprintf(g.stdout, "ratio (ringmaster / baseline throughput): %.2f\n", rep.Ratio)
			fmt.Fprintf(g.stdout, "server allocations per check-in beyond the baseline: %.1f\n", rep.Ringmaster.AllocsPerReq-rep.Baseline.AllocsPerReq)
			return nil
		},
	}
	f := checkin.Flags()
	f.IntVar(&cfg.Devices, "devices", 10000, "simulated devices (N)")
	f.IntVar(&cfg.Concurrency, "concurrency", 32, "concurrent clients (C)")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of each measured phase (D)")
	f.IntVar(&cfg.Rounds, "rounds", 2, "alternating baseline/ringmaster rounds")
	f.IntVar(&cfg.Products, "products", 50, "products in the seeded catalog")
	f.IntVar(&cfg.Versions, "versions", 20, "published versions per product")
	f.IntVar(&cfg.Deployments, "deployments", 1000, "deployments of the newest versions (two waves each)")
	f.IntVar(&cfg.Holds, "holds", 0, "safeguard holds on two-attribute cohorts")
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed for the device population")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(checkin)
	return cmd
}

func round(d time.Duration) time.Duration {
	if d > time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
