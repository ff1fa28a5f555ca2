package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/client"
)

func healthCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "health DEPLOYMENT",
		Short: "What a deployment's devices reported: per wave and cohort, with 95% intervals",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.DeploymentHealth(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(h)
			}
			d := h.Health
			fmt.Fprintf(g.stdout, "%s %s %s: %s, wave %d at %g%%\n\n", h.Deployment.ID, h.Deployment.Product, h.Deployment.Version,
				h.Deployment.State, h.Deployment.Wave+1, h.Deployment.Percent)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POPULATION\tOFFERED\tSUCCEEDED\tFAILURE RATE\tROLLBACK RATE\tCRASH RATE")
			row := func(name, offered string, r client.Rates) {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", name, offered, r.Devices["install_succeeded"], rate(r.Failure), rate(r.Rollback), rate(r.Crash))
			}
			row("all", fmt.Sprint(h.Offered), d.Overall)
			for _, w := range d.Waves {
				offered := "-"
				if w.Wave >= 0 && w.Wave < len(h.OfferedByWave) {
					offered = fmt.Sprint(h.OfferedByWave[w.Wave])
				}
				row(fmt.Sprintf("wave %d", w.Wave+1), offered, w.Rates)
			}
			for _, c := range d.Cells {
				row(c.Cell, "-", c.Rates)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if h.Gate != nil {
				fmt.Fprintf(g.stdout, "\ngate: %s — %s\nbaseline (%s): failure %.2f%%, rollback %.2f%%, crash %.2f%%; %d of %d offered devices reported\n",
					h.Gate.Verdict, h.Gate.Summary, h.Gate.Baseline.Source, 100*h.Gate.Baseline.Failure, 100*h.Gate.Baseline.Rollback,
					100*h.Gate.Baseline.Crash, h.Gate.Reported, h.Gate.Offered)
				for _, t := range h.Gate.Tests {
					fmt.Fprintf(g.stdout, "  %-9s %-12s observed %s; log LR worse %.2f, better %.2f\n", t.Metric, t.Verdict, rate(t.Observed), t.LogLRWorse, t.LogLRBetter)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func rate(r client.Rate) string {
	if r.Of == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%% [%.2f, %.2f] (%d/%d)", 100*r.Value, 100*r.Low, 100*r.High, r.Events, r.Of)
}
