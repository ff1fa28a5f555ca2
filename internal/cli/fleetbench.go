package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/internal/fleetbench"
)

func fleetbenchCmd(g *globals) *cobra.Command {
	var cfg fleetbench.Config
	var classes, policies, jsonOut, svgOut string
	cmd := &cobra.Command{
		Use:   "fleetbench [--devices N] [--worlds W] [--seed S] [--classes c1,c2] [--json FILE] [--svg FILE]",
		Short: "Simulate releases on seeded fleets under Ringmaster's rollout policy and the field's, side by side",
		Long: "Each world is a fleet of --devices devices with ~25 correlated attributes, daily check-ins, log-normal telemetry delays " +
			"(median 6 h, p90 24 h) and missing reports. Every release class is rolled out on the same worlds by Ringmaster's policy " +
			"(the server's rollout.Step and health gate) and by hawkBit-style error thresholds, WUfB-style pacing, fixed bake-time rings " +
			"and a plain rate limit. Classes: " + classNames() + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if classes != "" {
				for _, c := range strings.Split(classes, ",") {
					cfg.Classes = append(cfg.Classes, fleetbench.Class(strings.TrimSpace(c)))
				}
				for _, c := range cfg.Classes {
					if !validClass(c) {
						return fmt.Errorf("unknown class %q (one of %s)", c, classNames())
					}
				}
			}
			if policies != "" {
				cfg.Policies = strings.Split(policies, ",")
			}
			if cfg.Devices < 1000 || cfg.Devices > 10_000_000 || cfg.Worlds < 1 {
				return fmt.Errorf("--devices must be 1,000 to 10,000,000 and --worlds at least 1")
			}
			rep, err := fleetbench.Bench(cfg, func(s string) { fmt.Fprintln(g.stderr, s) })
			if err != nil {
				return err
			}
			if err := rep.WriteTable(g.stdout); err != nil {
				return err
			}
			if jsonOut != "" {
				b, _ := json.MarshalIndent(rep, "", "  ")
				if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
					return err
				}
			}
			if svgOut != "" {
				f, err := os.Create(svgOut)
				if err != nil {
					return err
				}
				defer f.Close()
				return rep.WriteSVG(f)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&cfg.Devices, "devices", 100_000, "devices per world")
	cmd.Flags().IntVar(&cfg.Worlds, "worlds", 3, "seeded worlds per class")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", 1, "seed of the first world")
	cmd.Flags().StringVar(&classes, "classes", "", "comma-separated release classes (default: all)")
	cmd.Flags().StringVar(&policies, "policies", "", "comma-separated policies (default: all): ringmaster, hawkbit-3%, hawkbit-5%, hawkbit-10%, wufb-paced, rings-1d, rings-2d, rings-7d, rate-limit")
	cmd.Flags().StringVar(&jsonOut, "json", "", "also write every result as JSON to this file")
	cmd.Flags().StringVar(&svgOut, "svg", "", "also write a speed-versus-harm plot to this SVG file")
	return cmd
}

func classNames() string {
	var s []string
	for _, c := range fleetbench.Classes {
		s = append(s, string(c))
	}
	return strings.Join(s, ", ")
}

func validClass(c fleetbench.Class) bool {
	for _, k := range fleetbench.Classes {
		if k == c {
			return true
		}
	}
	return false
}
