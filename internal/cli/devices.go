package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/client"
)

// deviceInventoryCmds are device list, show and versions: the registry.
func deviceInventoryCmds(g *globals) []*cobra.Command {
	var f client.DeviceFilter
	var attrs []string
	var seenAfter, seenBefore string
	var all, asJSON bool
	list := &cobra.Command{
		Use:   "list [--product P [--version V]] [--attr NAME=VALUE]... [--seen-after T] [--seen-before T] [--all]",
		Short: "List registered devices, filtered, a page at a time (--all for every page)",
		Long: `List the device registry in id order. Filters combine: devices running a
product (at a version), reporting attribute values, last seen within a time
range (RFC 3339 times, or durations ago such as 24h). The first page says how
many devices match; a page that is not the last prints the --cursor of the
next. A token limited to products must filter by one of them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, a := range attrs {
				name, value, ok := strings.Cut(a, "=")
				if !ok || name == "" {
					return fmt.Errorf("--attr %q is not NAME=VALUE", a)
				}
				if f.Attributes == nil {
					f.Attributes = map[string]string{}
				}
				f.Attributes[name] = value
			}
			for _, t := range []struct {
				s    string
				into *time.Time
			}{{seenAfter, &f.SeenAfter}, {seenBefore, &f.SeenBefore}} {
				if t.s != "" {
					v, err := parseWhen(t.s)
					if err != nil {
						return err
					}
					*t.into = v
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			f.Count = f.Cursor == ""
			var devices []client.Device
			var total *int64
			for {
				page, err := c.Devices(cmd.Context(), f)
				if err != nil {
					return err
				}
				if page.Total != nil {
					total = page.Total
				}
				devices = append(devices, page.Devices...)
				f.Cursor, f.Count = page.Next, false
				if !all || page.Next == "" {
					break
				}
			}
			if asJSON {
				return g.printJSON(client.DevicePage{Devices: devices, Next: f.Cursor, Total: total})
			}
			if total != nil {
				fmt.Fprintf(g.stdout, "%d devices match\n", *total)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tLAST SEEN\tINSTALLED\tATTRIBUTES")
			for _, d := range devices {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.LastSeen.UTC().Format(time.RFC3339), keyValues(d.Installed), keyValues(d.Attributes))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if f.Cursor != "" {
				fmt.Fprintf(g.stdout, "more: --cursor %s\n", f.Cursor)
			}
			return nil
		},
	}
	fl := list.Flags()
	fl.StringVar(&f.Product, "product", "", "only devices running this product")
	fl.StringVar(&f.Version, "version", "", "only devices at this version of --product")
	fl.StringArrayVar(&attrs, "attr", nil, "only devices reporting this attribute value (NAME=VALUE, repeatable)")
	fl.StringVar(&seenAfter, "seen-after", "", "only devices last seen at or after this time (RFC 3339, or a duration ago)")
	fl.StringVar(&seenBefore, "seen-before", "", "only devices last seen before this time (RFC 3339, or a duration ago)")
	fl.StringVar(&f.Cursor, "cursor", "", "start after this device (the previous page's cursor)")
	fl.IntVar(&f.Limit, "limit", 100, "devices per page (1-1000)")
	fl.BoolVar(&all, "all", false, "follow every page to the end")
	fl.BoolVar(&asJSON, "json", false, "print the devices as JSON")

	var showJSON bool
	show := &cobra.Command{
		Use: "show ID", Short: "What the registry knows of a device, its recent offers and reported outcomes", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Device(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if showJSON {
				return g.printJSON(d)
			}
			fmt.Fprintf(g.stdout, "device:     %s\nfirst seen: %s\nlast seen:  %s\ncheck-ins:  %d\n", d.ID,
				d.FirstSeen.UTC().Format(time.RFC3339), d.LastSeen.UTC().Format(time.RFC3339), d.CheckIns)
			for _, m := range []struct {
				title string
				kv    map[string]string
			}{{"installed", d.Installed}, {"attributes", d.Attributes}} {
				fmt.Fprintf(g.stdout, "%s:\n", m.title)
				for _, k := range slices.Sorted(maps.Keys(m.kv)) {
					fmt.Fprintf(g.stdout, "  %s: %s\n", k, m.kv[k])
				}
			}
			h, err := c.DeviceHistory(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "offers:\n")
			for _, o := range h.Offers {
				fmt.Fprintf(g.stdout, "  %s  %s %s in wave %d (%s)\n", o.At.UTC().Format(time.RFC3339), o.Product, o.Version, o.Wave+1, o.DeploymentID)
			}
			fmt.Fprintf(g.stdout, "outcomes:\n")
			for _, o := range h.Outcomes {
				fmt.Fprintf(g.stdout, "  %s  %s %s: %s in wave %d (%s)\n", o.At.UTC().Format(time.RFC3339), o.Product, o.Version, o.Outcome, o.Wave+1, o.DeploymentID)
			}
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print the device as JSON")

	var versionsJSON bool
	versions := &cobra.Command{
		Use: "versions PRODUCT", Short: "How many registered devices run each version of a product", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.ProductVersions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if versionsJSON {
				return g.printJSON(v)
			}
			fmt.Fprintf(g.stdout, "%d devices run %s\n", v.Devices, v.Product)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "VERSION\tDEVICES\tSHARE\t")
			for _, c := range v.Versions {
				fmt.Fprintf(tw, "%s\t%d\t%.1f%%\t\n", c.Version, c.Devices, 100*float64(c.Devices)/float64(max(v.Devices, 1)))
			}
			return tw.Flush()
		},
	}
	versions.Flags().BoolVar(&versionsJSON, "json", false, "print the distribution as JSON")
	return []*cobra.Command{list, show, versions}
}

// keyValues prints a map as "k=v, k=v" in key order.
func keyValues(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}
