package cli

import (
	"context"
	"fmt"
	"os"
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
			return local.Run(ctx, &mcp.StdioTransport{})
		},
	}
}

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
