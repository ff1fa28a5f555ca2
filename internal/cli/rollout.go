package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/client"
)

func deployCmd(g *globals) *cobra.Command {
	var product, version, waves, bake, start, deadline, window string
	var plan client.Plan
	var gate client.Gate
	var gated, noGate bool
	cmd := &cobra.Command{
		Use:   "deploy --product P --version V [--ring R] [--waves 1,10,50,100] [--bake 24h] [--start TIME] [--require-approval]",
		Short: "Deploy a published version by a plan; prints the deployment id",
		Long: `Deploy a published version. Without options it goes to every device of the
product at once. --waves gives cumulative percentages of the audience, each
running --bake before the next; --ring and --audience narrow the audience;
--start (RFC 3339) schedules the first wave; --deadline offers everything by
then; --require-approval makes every wave wait for "deployment approve";
--window 22:00-05:00 limits offers to a daily window in the device's local
time (attribute tz); --expedite offers at once and asks devices to check back
within 15 minutes.

A deployment of more than one wave is health-gated by default (a regression
pauses it and a wave advances only when healthy); --no-gate opts out. A
single-wave deployment is gated only with --gate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if plan.Waves, err = parseWaves(waves); err != nil {
				return err
			}
			plan.Bake = bake
			if plan.Start, err = parseTime("--start", start); err != nil {
				return err
			}
			if plan.Deadline, err = parseTime("--deadline", deadline); err != nil {
				return err
			}
			if window != "" {
				if plan.Window, err = parseWindow(window); err != nil {
					return err
				}
			}
			customGate := gated || cmd.Flags().Changed("baseline-failure") || gate.AllowInconclusive || gate.AutoHold != ""
			switch {
			case noGate && customGate:
				return fmt.Errorf("--no-gate cannot be combined with --gate, --baseline-failure, --allow-inconclusive or --auto-hold")
			case customGate:
				plan.Gate = &gate
			}
			plan.NoGate = noGate
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.DeployPlan(cmd.Context(), product, version, plan)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, d.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&product, "product", "", "product name (required)")
	f.StringVar(&version, "version", "", "version (required)")
	f.StringVar(&plan.Ring, "ring", "", "target this ring only")
	f.StringVar(&plan.Audience, "audience", "", "CEL rule narrowing the devices")
	f.StringVar(&waves, "waves", "", "cumulative wave percentages, e.g. 1,10,50,100 (default 100)")
	f.StringVar(&bake, "bake", "", "time each wave runs before the next, e.g. 24h")
	f.StringVar(&start, "start", "", "when the first wave may start (RFC 3339)")
	f.StringVar(&deadline, "deadline", "", "offer to the whole audience by then (RFC 3339)")
	f.StringVar(&window, "window", "", "daily maintenance window in device local time, e.g. 22:00-05:00")
	f.BoolVar(&plan.Expedite, "expedite", false, "offer at once, outside windows, and ask devices to check back soon")
	f.BoolVar(&plan.RequireApproval, "require-approval", false, "every wave waits for a human's approval")
	f.BoolVar(&gated, "gate", false, "health gate: a regression pauses the rollout; a wave advances only when healthy (default with more than one wave)")
	f.BoolVar(&noGate, "no-gate", false, "roll several waves out without a health gate")
	f.BoolVar(&gate.AllowInconclusive, "allow-inconclusive", false, "with --gate: let a baked wave advance without enough evidence")
	f.Float64Var(&gate.BaselineFailure, "baseline-failure", 0, "with --gate: declared baseline failure rate (default: previous release, else 0.02)")
	f.StringVar(&gate.AutoHold, "auto-hold", "", "with --gate: active or proposed, to hold a cohort that explains a regression instead of pausing")
	f.StringVar(&plan.Order, "order", "", "device order across waves: hash (default) or risk (least predicted risk first; train a model with ringmaster risk train)")
	f.Float64Var(&plan.Explore, "explore", 0, "with --order risk: share of every wave chosen at random (default 0.2, at least 0.05)")
	_ = cmd.MarkFlagRequired("product")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

// parseWaves reads --waves: cumulative percentages, "1,10,50,100".
func parseWaves(s string) ([]client.Wave, error) {
	if s == "" {
		return nil, nil
	}
	var out []client.Wave
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(f), "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("--waves: %q is not a percentage", f)
		}
		out = append(out, client.Wave{Percent: p})
	}
	return out, nil
}

func rollbackCmd(g *globals) *cobra.Command {
	var to, reason, waves string
	cmd := &cobra.Command{
		Use:   "rollback DEPLOYMENT --to VERSION --reason TEXT [--waves 1,10,50,100]",
		Short: "Halt a bad deployment and offer an earlier version to the devices that installed it",
		Long: `Roll a bad deployment back: halt it if it still runs, then deploy the
product's earlier published version --to as a rollback, offered only to the
devices that run the bad version, in the bad deployment's waves (or --waves),
ring, audience and order, under its health gate. Devices accept the older
version because the offer is marked as a rollback. Prints the rollback's
deployment id. "deployment show" on a halted deployment names the version to
use as proposed_rollback.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := parseWaves(waves)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Rollback(cmd.Context(), args[0], to, reason, ws...)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s\n", d.ID)
			fmt.Fprintf(g.stderr, "rolling %s back to %s %s: %s\n", args[0], d.Product, d.Version, progress(d))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "the earlier published version to offer (required)")
	f.StringVar(&reason, "reason", "", "why (required; recorded in the audit log and told to devices)")
	f.StringVar(&waves, "waves", "", "cumulative wave percentages (default: the bad deployment's)")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.MarkFlagRequired("reason")
	return cmd
}

// progress says where a deployment is, for people: waves numbered from 1.
func progress(d client.Deployment) string {
	n := len(d.Plan.Waves)
	switch {
	case d.AwaitingApproval && d.State != "paused":
		return fmt.Sprintf("awaiting approval of wave %d of %d", d.Wave+2, n)
	case d.Wave < 0:
		return d.State
	case d.State == "completed":
		return fmt.Sprintf("completed (%d of %d waves)", n, n)
	case d.State == "halted" || d.State == "cancelled":
		return fmt.Sprintf("%s in wave %d of %d", d.State, d.Wave+1, n)
	}
	return fmt.Sprintf("%s, wave %d of %d at %g%%", d.State, d.Wave+1, n, d.Percent)
}

func parseTime(flag, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not an RFC 3339 time (2026-11-27T22:00:00Z)", flag, s)
	}
	return &t, nil
}

func parseWindow(s string) (*client.Window, error) {
	from, to, ok := strings.Cut(s, "-")
	a, err1 := time.Parse("15:04", strings.TrimSpace(from))
	b, err2 := time.Parse("15:04", strings.TrimSpace(to))
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("--window: %q is not HH:MM-HH:MM", s)
	}
	return &client.Window{Start: a.Hour()*60 + a.Minute(), End: b.Hour()*60 + b.Minute()}, nil
}

func deploymentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "deployment", Short: "Show, list and control deployments"}
	var reason, product string
	for _, c := range []struct{ name, short string }{
		{"pause", "Stop offering until resumed"},
		{"resume", "Resume a paused deployment"},
		{"halt", "Stop for good (emergency stop)"},
		{"cancel", "Withdraw the deployment for good"},
		{"approve", "Let the next wave start"},
		{"advance", "Start the next wave now, skipping the rest of the bake"},
	} {
		sub := &cobra.Command{
			Use: c.name + " ID --reason TEXT", Short: c.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := g.client()
				if err != nil {
					return err
				}
				d, err := cl.Command(cmd.Context(), args[0], c.name, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "%s %s\n", d.ID, progress(d))
				return nil
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "why (required; recorded with the change)")
		_ = sub.MarkFlagRequired("reason")
		cmd.AddCommand(sub)
	}
	var ring, waves string
	promote := &cobra.Command{
		Use:   "promote ID [--ring R] --reason TEXT [--waves 1,10,50,100]",
		Short: "Move a completed deployment on to the next ring by rank",
		Long: `Move a deployment that completed its waves in its ring on to a ring of
higher rank (--ring, or the next one by rank), rolling out in --waves (default:
the last ring's waves) under the same health gate. It keeps its id, events and
health history, and the devices of the rings it leaves stay offered.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ws, err := parseWaves(waves)
			if err != nil {
				return err
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			d, err := cl.Promote(cmd.Context(), args[0], ring, reason, ws...)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s ring %s: %s\n", d.ID, d.Plan.Ring, progress(d))
			return nil
		},
	}
	promote.Flags().StringVar(&ring, "ring", "", "the ring to move on to (default: the next by rank)")
	promote.Flags().StringVar(&reason, "reason", "", "why (required; recorded with the change)")
	promote.Flags().StringVar(&waves, "waves", "", "cumulative wave percentages in the new ring (default: the last ring's)")
	_ = promote.MarkFlagRequired("reason")
	cmd.AddCommand(promote)
	show := &cobra.Command{
		Use: "show ID", Short: "Show a deployment and its events", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Deployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			evs, err := c.DeploymentEvents(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			// The deployment's own fields at the top, its events beside them.
			b, err := json.Marshal(d)
			if err != nil {
				return err
			}
			var out map[string]any
			if err := json.Unmarshal(b, &out); err != nil {
				return err
			}
			out["events"] = evs
			return g.printJSON(out)
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List deployments, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ds, err := c.Deployments(cmd.Context(), product)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPRODUCT\tVERSION\tPROGRESS\tCREATED")
			for _, d := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Product, d.Version, progress(d), d.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&product, "product", "", "only this product")
	cmd.AddCommand(show, list)
	return cmd
}

func holdCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hold", Short: "Create, release and list safeguard holds"}
	var product, version, rule, reason, status string
	create := &cobra.Command{
		Use: "create --product P [--version V] --rule CEL --reason TEXT", Short: "Hold an update for matching devices; prints the hold id",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.CreateHold(cmd.Context(), product, version, rule, reason)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, h.ID)
			return nil
		},
	}
	create.Flags().StringVar(&product, "product", "", "product (required)")
	create.Flags().StringVar(&version, "version", "", "only this version (default: every update of the product)")
	create.Flags().StringVar(&rule, "rule", "", "CEL rule matching the held devices (required)")
	create.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = create.MarkFlagRequired("product")
	_ = create.MarkFlagRequired("rule")
	_ = create.MarkFlagRequired("reason")
	release := &cobra.Command{
		Use: "release ID --reason TEXT", Short: "Release a hold: its devices are offered the update again", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.ReleaseHold(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s %s\n", h.ID, h.Status)
			return nil
		},
	}
	release.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit log)")
	_ = release.MarkFlagRequired("reason")
	list := &cobra.Command{
		Use: "list", Short: "List holds", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			hs, err := c.Holds(cmd.Context(), product, status)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPRODUCT\tVERSION\tSTATUS\tSOURCE\tRULE\tREASON")
			for _, h := range hs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Product, orAll(h.Version), h.Status, h.Source, h.Rule, h.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&product, "product", "", "only this product")
	list.Flags().StringVar(&status, "status", "", "proposed, active or released")
	activate := &cobra.Command{
		Use: "activate ID", Short: "Activate a hold the health gate proposed", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			h, err := c.ActivateHold(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s %s\n", h.ID, h.Status)
			return nil
		},
	}
	cmd.AddCommand(create, release, activate, list)
	return cmd
}

func orAll(v string) string {
	if v == "" {
		return "(all)"
	}
	return v
}

func ringCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "ring", Short: "Define and list rings"}
	var r client.Ring
	var members string
	put := &cobra.Command{
		Use: "put NAME --rank N [--rule CEL] [--members ID,ID…]", Short: "Create or replace a ring", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			r.Name = args[0]
			if members != "" {
				r.Members = strings.Split(members, ",")
			}
			out, err := c.PutRing(cmd.Context(), r)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, out.Name)
			return nil
		},
	}
	put.Flags().IntVar(&r.Rank, "rank", 0, "order (canary 0, insider 1, broad 2, retail 3…)")
	put.Flags().StringVar(&r.Rule, "rule", "", "CEL rule for the ring's devices")
	put.Flags().StringVar(&r.Description, "description", "", "description")
	put.Flags().StringVar(&members, "members", "", "explicit member device ids, comma-separated")
	list := &cobra.Command{
		Use: "list", Short: "List rings by rank", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rs, err := c.Rings(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RANK\tNAME\tMEMBERS\tRULE")
			for _, r := range rs {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", r.Rank, r.Name, len(r.Members), r.Rule)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a ring no deployment was planned for", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteRing(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "ring %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(put, list, del)
	return cmd
}

func explainCmd(g *globals) *cobra.Command {
	var req client.ExplainRequest
	var attrs, installed []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain --device-id ID [--attr k=v ...] [--installed P=V ...] [--update UPDATE_ID]",
		Short: "Why a device is or is not offered each update",
		Long: `Explain the offer decision for a device: every check in order (installed,
newer, floor, applicability, prerequisites, deployment, ring, audience, wave,
maintenance_window, hold) with the values used, and the step that failed.
With only --device-id the device comes from the registry (as last seen);
--attr and --installed describe a device instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Attributes, err = pairs("--attr", attrs); err != nil {
				return err
			}
			if req.Installed, err = pairs("--installed", installed); err != nil {
				return err
			}
			if len(attrs) > 0 && req.Installed == nil {
				req.Installed = map[string]string{}
			}
			if len(installed) > 0 && req.Attributes == nil {
				req.Attributes = map[string]string{}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ex, err := c.Explain(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(ex)
			}
			fmt.Fprintf(g.stdout, "device %s (%s) at %s\n", ex.Device.ID, ex.Device.Source, ex.At.Format(time.RFC3339))
			if len(ex.Decisions) == 0 {
				fmt.Fprintln(g.stdout, "no deployed update applies to the products this device runs")
			}
			for _, d := range ex.Decisions {
				verdict := "OFFERED"
				if !d.Offered {
					steps := d.FailedSteps
					if len(steps) == 0 {
						steps = []string{d.FailedStep} // an older server
					}
					verdict = "not offered: " + strings.Join(steps, ", ")
				}
				fmt.Fprintf(g.stdout, "\n%s %s (%s, deployment %s): %s\n", d.Product, d.Version, d.UpdateID, d.DeploymentID, verdict)
				if r := d.Risk; r != nil {
					fmt.Fprintf(g.stdout, "  risk: predicted failure %.2f%% (%.0f%% of the fleet less risky); intercept %+.2f", 100*r.Score, 100*r.Quantile, r.Intercept)
					for _, c := range r.Contributions[:min(len(r.Contributions), 5)] {
						fmt.Fprintf(g.stdout, ", %s %+.2f", c.Feature, c.LogOdds)
					}
					fmt.Fprintln(g.stdout)
				}
				for _, ch := range d.Checks {
					mark := "ok  "
					if !ch.Pass {
						mark = "FAIL"
					}
					fmt.Fprintf(g.stdout, "  %s %-18s %s\n", mark, ch.Step, ch.Detail)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.DeviceID, "device-id", "", "device id (required)")
	f.StringArrayVar(&attrs, "attr", nil, "attribute k=v (repeatable)")
	f.StringArrayVar(&installed, "installed", nil, "installed product P=V (repeatable)")
	f.StringVar(&req.UpdateID, "update", "", "only this update id")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("device-id")
	return cmd
}

func pairs(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func riskCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "risk", Short: "Train and show products' device-risk models (for --order risk)"}
	var asJSON bool
	show := func(m client.RiskModel) error {
		if asJSON {
			return g.printJSON(m)
		}
		fmt.Fprintf(g.stdout, "%s risk model %s, trained %s by %s\n", m.Product, m.ID, m.TrainedAt.Format(time.RFC3339), m.TrainedBy)
		fmt.Fprintf(g.stdout, "%d installs (%d failed), %d weights, lambda %g, recalibration slope %.2f; fleet mean risk %.2f%% over %d devices\n",
			m.Examples, m.Failures, m.Weights, m.Lambda, m.Slope, 100*m.PopulationMean, m.Population)
		for _, c := range m.Top {
			fmt.Fprintf(g.stdout, "  %-40s log-odds %+.3f (odds x%.2f)\n", c.Feature, c.LogOdds, c.OddsRatio)
		}
		return nil
	}
	train := &cobra.Command{
		Use:   "train PRODUCT",
		Short: "Train a product's risk model from its past deployments' outcomes",
		Long: `Train a product's device-risk model: L2-regularized logistic regression over
the attribute values of the devices that installed its past releases
(penalty chosen by cross-validation, recalibrated on held-out predictions).
Risk-ordered deployments created afterwards (deploy --order risk) pin it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			m, err := c.TrainRiskModel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(m)
		},
	}
	get := &cobra.Command{
		Use:   "show PRODUCT",
		Short: "Show a product's newest risk model and its largest weights",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			m, err := c.RiskModel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return show(m)
		},
	}
	for _, sub := range []*cobra.Command{train, get} {
		sub.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	cmd.AddCommand(train, get)
	return cmd
}
