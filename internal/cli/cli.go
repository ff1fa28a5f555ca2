// Package cli is the ringmaster command line: the server (serve), the
// publisher and operator commands built on the Go client SDK, and the
// benchmarks.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/client"
)

// Main runs the command line with args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// globals are the flags every client command shares.
type globals struct {
	url, token, data string
	stdout, stderr   io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "ringmaster",
		Short:         "Ringmaster publishes updates and delivers them safely to fleets of devices",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "url", envOr("RINGMASTER_URL", "http://127.0.0.1:8080"), "server URL (env RINGMASTER_URL)")
	pf.StringVar(&g.token, "token", os.Getenv("RINGMASTER_TOKEN"),
		"API token (env RINGMASTER_TOKEN; default: the admin.token file in --data)")
	pf.StringVar(&g.data, "data", envOr("RINGMASTER_DATA", "./ringmaster-data"), "data directory (env RINGMASTER_DATA)")
	root.AddCommand(serveCmd(g), publishCmd(g), deployCmd(g), deploymentCmd(g), holdCmd(g), ringCmd(g), explainCmd(g), healthCmd(g),
		updateCmd(g), productCmd(g), benchCmd(g), tokenCmd(g), enrollmentCmd(g), deviceCmd(g), auditCmd(g), keysCmd(g), mcpCmd(g), approvalCmd(g), fleetbenchCmd(g), riskCmd(g))
	return root
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
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(g.data, "admin.token"))
		if err == nil {
			tok = strings.TrimSpace(string(b))
		}
	}
	return client.New(g.url, tok)
}

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
