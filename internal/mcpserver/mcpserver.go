// Package mcpserver exposes Ringmaster to AI agents over the Model Context
// Protocol (github.com/modelcontextprotocol/go-sdk): tools to look at
// products, updates, deployments, holds, health, devices and the audit
// log; tools that reduce exposure at once; and plan/apply tools that widen
// exposure only within the token's budget or with a human's approval.
// Every tool checks the calling token's permission and product scope.
package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/agent"
	"github.com/ringmaster/ringmaster/internal/audit"
	"github.com/ringmaster/ringmaster/internal/catalog"
	"github.com/ringmaster/ringmaster/internal/controller"
	"github.com/ringmaster/ringmaster/internal/delivery"
	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/store"
	"github.com/ringmaster/ringmaster/internal/targeting"
)

// MaxRequestBytes bounds one MCP request body (every tool's arguments).
const MaxRequestBytes = 256 << 10

// Config wires the MCP server.
type Config struct {
	Store      *store.Store
	Controller *controller.Controller
	Planner    *agent.Planner
	Rules      *targeting.Env
	Snapshots  interface{ Snapshot() *delivery.Snapshot }
	Refresh    func(ctx context.Context) error
	// Withdraw withdraws an update for an authorized actor (the admin
	// API's own, so both surfaces do the same).
	Withdraw func(ctx context.Context, id, actor, reason string) (catalog.Update, error)
	Version  string
	Now      func() time.Time
}

// Server is Ringmaster's MCP server.
type Server struct {
	cfg Config
	mcp *mcp.Server
}

// New builds the server and registers its tools, resources and prompts.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, mcp: mcp.NewServer(&mcp.Implementation{Name: "ringmaster", Version: cfg.Version}, &mcp.ServerOptions{
		Instructions: "Ringmaster rolls updates out to device fleets in health-gated waves. Look before you act: " +
			"deployment_status and cohort_health show the evidence. pause_deployment, halt_deployment, cancel_deployment and " +
			"create_hold take effect at once. Anything that exposes more devices goes through plan_change (a dry-run with a " +
			"forecast and a plan_hash) and apply_plan; beyond your token's budget apply_plan files an approval request " +
			"that a person decides (wait with get_approval).",
	})}
	s.tools()
	s.resources()
	s.prompts()
	return s
}

// Handler serves streamable HTTP at /mcp. authenticate resolves the bearer
// token (the admin API's authentication, rate limits included) before any
// MCP processing; the principal travels with each request to the tools.
func (s *Server) Handler(authenticate func(r *http.Request) (access.Principal, error)) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.mcp },
		&mcp.StreamableHTTPOptions{MaxRequestBodyBytes: MaxRequestBytes, SessionTimeout: 30 * time.Minute})
	verify := func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		p, err := authenticate(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", auth.ErrInvalidToken, fault.Message(err))
		}
		// UserID binds the MCP session to this token: another token cannot
		// continue it.
		return &auth.TokenInfo{UserID: p.TokenID, Extra: map[string]any{principalKey: p}}, nil
	}
	return auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(h)
}

// Run serves MCP on a transport (stdio for a local agent) as p.
func (s *Server) Run(ctx context.Context, t mcp.Transport) error { return s.mcp.Run(ctx, t) }

const principalKey = "ringmaster.principal"

func principal(req interface{ GetExtra() *mcp.RequestExtra }) (access.Principal, error) {
	ex := req.GetExtra()
	if ex == nil || ex.TokenInfo == nil {
		return access.Principal{}, fault.E(fault.Unauthorized, "no token")
	}
	p, ok := ex.TokenInfo.Extra[principalKey].(access.Principal)
	if !ok {
		return access.Principal{}, fault.E(fault.Unauthorized, "no token")
	}
	return p, nil
}

// tool registers a tool that needs perm; the handler gets the principal.
func tool[In, Out any](s *Server, name, description string, perm access.Permission, annotations *mcp.ToolAnnotations,
	h func(ctx context.Context, p access.Principal, in In) (Out, error)) {
	mcp.AddTool(s.mcp, &mcp.Tool{Name: name, Description: description, Annotations: annotations},
		func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, Out, error) {
			var zero Out
			p, err := principal(req)
			if err == nil && perm != "" {
				err = p.Authorize(perm)
			}
			if err != nil {
				return nil, zero, toolError(err)
			}
			out, err := h(audit.WithActor(ctx, p.Actor()), p, in)
			if err != nil {
				return nil, zero, toolError(err)
			}
			return nil, out, nil
		})
}

// toolError phrases an error for a model: its kind and the message.
func toolError(err error) error {
	return fmt.Errorf("%s: %s", fault.KindOf(err), fault.Message(err))
}

var (
	readOnly = &mcp.ToolAnnotations{ReadOnlyHint: true}
	reduces  = &mcp.ToolAnnotations{DestructiveHint: ptr(false), IdempotentHint: true}
	widens   = &mcp.ToolAnnotations{DestructiveHint: ptr(true)}
)

func ptr[T any](v T) *T { return &v }

// limit clamps a caller's limit.
func limit(n, def, max int) int {
	if n <= 0 {
		return def
	}
	return min(n, max)
}

func (s *Server) deployment(ctx context.Context, p access.Principal, id string) (rollout.Deployment, error) {
	if err := catalog.ValidateID("deployment_id", "dep", id); err != nil {
		return rollout.Deployment{}, err
	}
	d, err := s.cfg.Store.Deployment(ctx, id)
	if err != nil {
		return d, err
	}
	return d, p.AuthorizeProduct(d.Product)
}

func (s *Server) resources() {
	s.mcp.AddResourceTemplate(&mcp.ResourceTemplate{
		Name: "deployment-health", URITemplate: "ringmaster://deployments/{id}/health", MIMEType: "application/json",
		Description: "A deployment's health report: state, rates per wave and cohort with intervals, and the gate's verdict with its numbers.",
	}, func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		p, err := principal(req)
		if err == nil {
			err = p.Authorize(access.Read)
		}
		if err != nil {
			return nil, toolError(err)
		}
		id, ok := strings.CutPrefix(req.Params.URI, "ringmaster://deployments/")
		id, ok2 := strings.CutSuffix(id, "/health")
		if !ok || !ok2 {
			return nil, mcp.ResourceNotFoundError(req.Params.URI)
		}
		d, err := s.deployment(ctx, p, id)
		if err != nil {
			return nil, toolError(err)
		}
		rep, err := s.cfg.Controller.Report(ctx, d, 20)
		if err != nil {
			return nil, toolError(err)
		}
		b, _ := json.MarshalIndent(rep, "", "  ")
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "application/json", Text: string(b)}}}, nil
	})
}

func (s *Server) prompts() {
	s.mcp.AddPrompt(&mcp.Prompt{
		Name:        "triage_deployment",
		Description: "Triage a deployment: read its health, decide whether to pause or hold, and what to plan next.",
		Arguments:   []*mcp.PromptArgument{{Name: "deployment_id", Description: "the deployment (dep_…)", Required: true}},
	}, func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		id := req.Params.Arguments["deployment_id"]
		if err := catalog.ValidateID("deployment_id", "dep", id); err != nil {
			return nil, toolError(err)
		}
		text := fmt.Sprintf(`Triage deployment %[1]s.
1. Call deployment_status for %[1]s: note the state, the current wave, the gate's verdict and its numbers (observed rates with intervals against the baseline, completeness).
2. Call cohort_health for %[1]s: look for cohorts whose failure rate is well above the rest (intervals not overlapping the overall rate).
3. If the whole rollout regressed, call pause_deployment (or halt_deployment if the harm is severe) with the numbers in the reason.
4. If one cohort regressed, call create_hold for the product with a CEL rule matching that cohort (for example device.attributes["oem"] == "contoso") and the numbers in the reason; the rollout can continue for everyone else.
5. Only when the evidence is healthy, consider plan_change (resume or advance) and read its forecast before apply_plan. Never widen exposure to fix a problem.
Report what you saw, what you did, and why.`, id)
		return &mcp.GetPromptResult{Description: "Triage " + id, Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: text}}}}, nil
	})
}

// visible filters a slice to the principal's products.
func visible[T any](p access.Principal, xs []T, product func(T) string) []T {
	return slices.DeleteFunc(xs, func(x T) bool { return !p.InScope(product(x)) })
}
