package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
)

// mcpCmd serves MCP on stdin/stdout for a local agent, relaying every
// call to the server's /mcp endpoint with the CLI's token: the agent gets
// exactly the tools, permissions and audit trail of that token.
func mcpCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "mcp",
		Short: "Serve MCP on stdio for a local agent (relayed to the server's /mcp with --token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			remote, err := mcp.NewClient(&mcp.Implementation{Name: "ringmaster-cli", Version: "0.1"}, nil).
				Connect(ctx, &mcp.StreamableClientTransport{Endpoint: c.MCPURL(), HTTPClient: c.HTTPClient()}, nil)
			if err != nil {
				return fmt.Errorf("connect to %s: %w", c.MCPURL(), err)
			}
			defer remote.Close()
			init := remote.InitializeResult()
			local := mcp.NewServer(&mcp.Implementation{Name: "ringmaster", Version: init.ServerInfo.Version},
				&mcp.ServerOptions{Instructions: init.Instructions})
			if err := relay(ctx, remote, local); err != nil {
				return err
			}
			return local.Run(ctx, drainingStdio(ctx, os.Stdin, os.Stdout))
		},
	}
}

// drainingStdio is MCP's stdio transport, except that the end of the
// input is passed on only once every request read has been answered:
// replies to piped calls (echo '…tools/call…' | ringmaster mcp) are
// written before the process exits instead of being lost.
func drainingStdio(ctx context.Context, in io.Reader, out io.Writer) mcp.Transport {
	d := &drain{ctx: ctx, answered: make(chan struct{}, 1)}
	return &mcp.IOTransport{
		Reader: &drainReader{d: d, r: bufio.NewReader(in)},
		Writer: &drainWriter{d: d, w: out},
	}
}

// drain counts the requests read and the responses written.
type drain struct {
	ctx      context.Context
	mu       sync.Mutex
	requests int
	answers  int
	answered chan struct{} // signalled on each response
}

// jsonrpcKind says whether one JSON-RPC message is a request (an id and a
// method) or a response (an id and no method).
func jsonrpcKind(line []byte) (request, response bool) {
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	if json.Unmarshal(line, &m) != nil || len(m.ID) == 0 || string(m.ID) == "null" {
		return false, false
	}
	return m.Method != "", m.Method == ""
}

type drainReader struct {
	d    *drain
	r    *bufio.Reader
	line []byte // what is left of the current line
}

func (r *drainReader) Read(p []byte) (int, error) {
	if len(r.line) == 0 {
		line, err := r.r.ReadBytes('\n')
		if len(line) > 0 {
			if req, _ := jsonrpcKind(line); req {
				r.d.mu.Lock()
				r.d.requests++
				r.d.mu.Unlock()
			}
			r.line = line
		} else if err != nil {
			if err == io.EOF {
				r.d.wait()
			}
			return 0, err
		}
	}
	n := copy(p, r.line)
	r.line = r.line[n:]
	return n, nil
}

func (r *drainReader) Close() error { return nil }

// wait returns once every request read has been answered, or ctx ends.
func (d *drain) wait() {
	for {
		d.mu.Lock()
		done := d.answers >= d.requests
		d.mu.Unlock()
		if done {
			return
		}
		select {
		case <-d.answered:
		case <-d.ctx.Done():
			return
		}
	}
}

type drainWriter struct {
	d       *drain
	w       io.Writer
	partial []byte
}

func (w *drainWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.partial = append(w.partial, p[:n]...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if _, resp := jsonrpcKind(w.partial[:i]); resp {
			w.d.mu.Lock()
			w.d.answers++
			w.d.mu.Unlock()
			select {
			case w.d.answered <- struct{}{}:
			default:
			}
		}
		w.partial = w.partial[i+1:]
	}
	return n, err
}

func (w *drainWriter) Close() error { return nil }

// relay registers on local every tool, prompt and resource template of
// remote, each forwarding to remote.
func relay(ctx context.Context, remote *mcp.ClientSession, local *mcp.Server) error {
	for t, err := range remote.Tools(ctx, nil) {
		if err != nil {
			return err
		}
		local.AddTool(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return remote.CallTool(ctx, &mcp.CallToolParams{Name: req.Params.Name, Arguments: req.Params.Arguments})
		})
	}
	for p, err := range remote.Prompts(ctx, nil) {
		if err != nil {
			return err
		}
		local.AddPrompt(p, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return remote.GetPrompt(ctx, req.Params)
		})
	}
	for rt, err := range remote.ResourceTemplates(ctx, nil) {
		if err != nil {
			return err
		}
		local.AddResourceTemplate(rt, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return remote.ReadResource(ctx, req.Params)
		})
	}
	return nil
}

func approvalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "approval", Short: "Decide agents' requests to widen exposure beyond their budget"}
	var status, reason string
	list := &cobra.Command{
		Use: "list [--status pending]", Short: "List approval requests", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			as, err := c.Approvals(cmd.Context(), status)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tACTION\tTARGET\tEXPOSURE\tREQUESTED\tREASON")
			for _, a := range as {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", a.ID, a.Status, a.Action, a.Target, a.Exposure, a.CreatedAt.Format(time.RFC3339), a.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&status, "status", "", "only this status (pending, approved, denied, applied, failed)")
	decide := func(approve bool) *cobra.Command {
		verb := map[bool]string{true: "approve", false: "deny"}[approve]
		c := &cobra.Command{
			Use: verb + " ID --reason TEXT", Short: map[bool]string{true: "Approve a request: the agent's plan is applied now, if still current",
				false: "Deny a request"}[approve],
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				a, err := c.DecideApproval(cmd.Context(), args[0], approve, reason)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "%s %s\n", a.ID, a.Status)
				if a.Result != "" && a.Status == "failed" {
					fmt.Fprintln(os.Stderr, a.Result)
				}
				return nil
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
		return c
	}
	cmd.AddCommand(list, decide(true), decide(false))
	return cmd
}
