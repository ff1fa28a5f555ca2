// Package cli is the ringmaster command line: the server (serve), the
// publisher and operator commands built on the Go client SDK, and the
// benchmarks.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/client"
)

// Main runs the command line with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "error:", root.g.explain(err))
		return 1
	}
	return 0
}

// globals are the flags every client command shares.
type globals struct {
	url, token, data string
	stdout, stderr   io.Writer
	// tokenFrom says where the token in use came from, for errors.
	tokenFrom string
}

// rootCommand is the command tree with the globals its commands share.
type rootCommand struct {
	*cobra.Command
	g *globals
}

func newRoot(stdout, stderr io.Writer) rootCommand {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "ringmaster",
		Short:         "Ringmaster publishes updates and delivers them safely to fleets of devices",
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("ringmaster {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "url", envOr("RINGMASTER_URL", "http://127.0.0.1:8080"), "server URL (env RINGMASTER_URL)")
	pf.StringVar(&g.token, "token", os.Getenv("RINGMASTER_TOKEN"),
		"API token (env RINGMASTER_TOKEN; default: the admin.token file in --data)")
	pf.StringVar(&g.data, "data", envOr("RINGMASTER_DATA", "./ringmaster-data"), "data directory (env RINGMASTER_DATA)")
	root.AddCommand(serveCmd(g), publishCmd(g), deployCmd(g), deploymentCmd(g), rollbackCmd(g), contentCmd(g), holdCmd(g), ringCmd(g), explainCmd(g), healthCmd(g),
		updateCmd(g), productCmd(g), benchCmd(g), tokenCmd(g), enrollmentCmd(g), deviceCmd(g), auditCmd(g), keysCmd(g), mcpCmd(g), approvalCmd(g), fleetbenchCmd(g), riskCmd(g), versionCmd())
	refuseUnknownSubcommands(root)
	return rootCommand{root, g}
}

// refuseUnknownSubcommands makes every command that only groups others
// (ring, deployment, …) fail on an unknown subcommand instead of printing
// its help and succeeding; on its own it still prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.NoArgs
		c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the version of this binary", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "ringmaster", buildVersion())
			return err
		},
	}
}

// buildVersion describes this binary from the build information the Go
// toolchain embeds: the module version (a tag when installed with go
// install), else the commit it was built from.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, when string
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	if rev != "" {
		v += " (commit " + rev[:min(len(rev), 12)]
		if modified {
			v += "+modified"
		}
		if when != "" {
			v += ", " + when
		}
		v += ")"
	}
	return v + " " + info.GoVersion
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// client returns an SDK client for the global flags. Without a token it
// falls back to the admin token file a local server wrote.
func (g *globals) client() (*client.Client, error) {
	tok := g.token
	g.tokenFrom = "--token or RINGMASTER_TOKEN"
	if tok == "" {
		path := filepath.Join(g.data, "admin.token")
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("no API token: --token and RINGMASTER_TOKEN are empty and %s cannot be read (%v); "+
				"pass --token, or --data with the server's data directory", path, errors.Unwrap(err))
		}
		tok = strings.TrimSpace(string(b))
		g.tokenFrom = path
	}
	return client.New(g.url, tok)
}

// explain adds to an error what a person needs to act on it: where a
// refused token came from.
func (g *globals) explain(err error) error {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status == 401 && g.tokenFrom != "" {
		return fmt.Errorf("%w (the token from %s, sent to %s)", err, g.tokenFrom, g.url)
	}
	return err
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
