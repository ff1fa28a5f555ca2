package cli

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ringmaster/ringmaster/client"
)

func publishCmd(g *globals) *cobra.Command {
	var u client.NewUpdate
	var notesFile string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "publish --product P --version V [flags] FILE...",
		Short: "Publish files as a new update and wait until it is published; prints the update id",
		Long: `Publish files as a new version of a product.

The product is created if it does not exist. Each file is hashed, declared,
uploaded (resuming and retrying in chunks; files the server already holds are
not sent again) and verified by the server's publishing pipeline. The command
waits until the update is published and prints its id. Publishing the same
files as the same version again is harmless and prints the same id.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if notesFile != "" {
				b, err := os.ReadFile(notesFile)
				if err != nil {
					return err
				}
				u.ReleaseNotes = string(b)
			}
			showBars := !quiet && isTerminal(g.stderr)
			var bar *progressbar.ProgressBar
			opts := client.PublishOptions{
				OnFile: func(name string, size int64) {
					if !quiet && !showBars {
						fmt.Fprintf(g.stderr, "uploading %s (%d bytes)\n", name, size)
					}
					bar = progressbar.NewOptions64(size,
						progressbar.OptionSetDescription(name), progressbar.OptionShowBytes(true),
						progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetVisibility(showBars),
						progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
				},
				UploadOptions: client.UploadOptions{Progress: func(n int64) {
					if bar != nil {
						_ = bar.Set64(n)
					}
				}},
			}
			pub, err := c.PublishFiles(cmd.Context(), u, files, opts)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(g.stderr, "published %s %s\n", pub.Product, pub.Version)
			}
			fmt.Fprintln(g.stdout, pub.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&u.Product, "product", "", "product name (required)")
	f.StringVar(&u.Version, "version", "", "version, dotted numbers or semver (required)")
	f.StringVar(&u.Kind, "kind", "quality", "security, quality, feature, driver, app or model")
	f.StringVar(&u.Severity, "severity", "none", "none, low, moderate, important or critical")
	f.StringVar(&u.Classification, "classification", "", "free-form classification")
	f.StringVar(&u.Title, "title", "", "title")
	f.StringVar(&notesFile, "release-notes-file", "", "file with release notes")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the update id")
	_ = cmd.MarkFlagRequired("product")
	_ = cmd.MarkFlagRequired("version")
	return cmd
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func updateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "update", Short: "Show, list, withdraw and delete updates"}
	var product string
	show := &cobra.Command{
		Use: "show ID", Short: "Show an update as JSON", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			u, err := c.Update(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.printJSON(u)
		},
	}
	deltas := &cobra.Command{
		Use: "deltas ID", Short: "List the deltas made to an update from earlier versions, as JSON", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ds, err := c.UpdateDeltas(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.printJSON(ds)
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "List updates", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			us, err := c.Updates(cmd.Context(), product)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPRODUCT\tVERSION\tKIND\tSTATE")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.ID, u.Product, u.Version, u.Kind, u.State)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&product, "product", "", "only this product")
	var reason string
	withdraw := &cobra.Command{
		Use: "withdraw ID --reason TEXT", Args: cobra.ExactArgs(1),
		Short: "Withdraw a published update: offered to no device, removed from the signed TUF targets, its deployments cancelled",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			u, err := c.Withdraw(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s %s %s %s\n", u.ID, u.Product, u.Version, u.State)
			return nil
		},
	}
	withdraw.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit log)")
	_ = withdraw.MarkFlagRequired("reason")
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete an update no deployment ever used (a published one leaves the signed TUF targets)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteUpdate(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "update %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(show, deltas, list, withdraw, del)
	return cmd
}

func productCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "product", Short: "Create, list and delete products"}
	var title, description, omahaAppID string
	var formats map[string]string
	create := &cobra.Command{
		Use: "create NAME [--format DIALECT=FORMAT]... [--omaha-app-id ID]", Short: "Create a product (or update its title, description, formats and Omaha app id)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.PutProduct(cmd.Context(), client.Product{Name: args[0], Title: title, Description: description, Formats: formats, OmahaAppID: omahaAppID})
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, p.Name)
			return nil
		},
	}
	create.Flags().StringVar(&title, "title", "", "title")
	create.Flags().StringVar(&description, "description", "", "description")
	create.Flags().StringToStringVar(&formats, "format", nil, "the payload format a dialect's agents install: ddi=swu (SWUpdate), ddi=raucb (RAUC), mender=mender; publish checks payloads named *.FORMAT and requires one per update")
	create.Flags().StringVar(&omahaAppID, "omaha-app-id", "", "the app id Omaha clients name the product by (default: its name)")
	list := &cobra.Command{
		Use: "list", Short: "List products", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ps, err := c.Products(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTITLE")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\n", p.Name, p.Title)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a product with no updates and no holds", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteProduct(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "product %s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func contentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "content", Short: "Manage the content store"}
	var dryRun, asJSON bool
	gc := &cobra.Command{
		Use:   "gc [--dry-run] [--json]",
		Short: "Remove content no update or delta references",
		Long: `Remove blobs that no payload (of any update, in any state: an upload in
flight counts) and no delta references, once they are older than the server's
content_gc.grace, and staging directories of deleted updates. The server also
does this every content_gc.interval. --dry-run lists what would go.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rep, err := c.CollectGarbage(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(rep)
			}
			verb := "removed"
			if rep.DryRun {
				verb = "would remove"
			}
			for _, b := range rep.Removed {
				fmt.Fprintf(g.stdout, "%s %s (%d bytes)\n", verb, b.SHA256, b.Size)
			}
			fmt.Fprintf(g.stdout, "%d blobs (%d bytes) scanned, %d referenced, %d unreferenced but within the grace period; %s %d blobs, %d bytes, and %d stale staging directories\n",
				rep.Scanned, rep.ScannedBytes, rep.Referenced, rep.Young, verb, len(rep.Removed), rep.FreedBytes, len(rep.Staged))
			return nil
		},
	}
	gc.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be removed")
	gc.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(gc)
	return cmd
}
