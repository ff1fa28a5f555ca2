package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

// mcpSession connects the Go SDK's MCP client to the server with a token.
func mcpSession(t *testing.T, s *server, token string) *mcp.ClientSession {
	return apptest.MCPSession(t, s.admin.WithToken(token))
}

// call calls a tool and decodes its structured result into out; it fails
// the test on a protocol error and returns a tool error's text.
func call(t *testing.T, sess *mcp.ClientSession, name string, args map[string]any, out any) string {
	t.Helper()
	return apptest.CallTool(t, sess, name, args, out)
}

func mustCall(t *testing.T, sess *mcp.ClientSession, name string, args map[string]any, out any) {
	t.Helper()
	if msg := call(t, sess, name, args, out); msg != "" {
		t.Fatalf("%s: %s", name, msg)
	}
}

// regressedDeployment publishes os 5.0 to 200 registered devices in waves
// of 10/50/100% with no health gate (no_gate), and has the enrolled devices
// the first wave was offered to report on their offers: every contoso
// device fails, the others succeed. It returns the failures and reports
// counted.
func regressedDeployment(t *testing.T, s *server) (d client.Deployment, failed, reported int64) {
	t.Helper()
	ctx := context.Background()
	u := publishSmall(t, s, "os", "5.0")
	for i := range 200 {
		oem := []string{"contoso", "fabrikam"}[i%2]
		if _, err := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: fmt.Sprintf("dev-%03d", i),
			Attributes: map[string]string{"oem": oem}, Installed: []client.Installed{{Product: "os", Version: "4.0"}}}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 10}, {Percent: 50}, {Percent: 100}}, Bake: "1h", NoGate: true})
	if err != nil {
		t.Fatal(err)
	}
	events := installEvents(u, 200, "r", 2) // even devices (contoso) fail
	r, err := s.devices(t).send(ctx, events)
	if err != nil || r.Accepted+r.NotOffered != 200 {
		t.Fatalf("send: %d accepted, %d not offered, %v", r.Accepted, r.NotOffered, err)
	}
	for _, res := range r.Results {
		if res.Status == "accepted" {
			reported++
			var i int
			fmt.Sscanf(res.EventID, "r-%d", &i)
			if i%2 == 0 {
				failed++
			}
		}
	}
	if failed == 0 || failed == reported {
		t.Fatalf("the first wave holds %d contoso devices of %d: the scenario needs both oems", failed, reported)
	}
	waitFor(t, 30*time.Second, func() bool {
		h, err := s.admin.DeploymentHealth(ctx, d.ID)
		n, _ := s.Store.CountDevicesWithProduct(ctx, "os")
		return err == nil && h.Health.Overall.Devices["install_failed"] == failed &&
			h.Health.Overall.Devices["install_succeeded"] == reported-failed && h.Offered == reported && n == 200
	})
	return d, failed, reported
}

// TestMCPAgentScenario: a deployment regresses; an agent reads its health,
// pauses it, holds the bad cohort, plans a resume within its budget and
// applies it; a stale plan is refused; a plan beyond the budget becomes an
// approval request that only a person's token can approve; the audit log
// has every step as the agent's.
func TestMCPAgentScenario(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	d, failed, reported := regressedDeployment(t, s)
	agentTok, agentSecret, err := s.admin.CreateToken(ctx, client.NewToken{Name: "oncall-agent", Role: "agent", Budget: 30})
	if err != nil {
		t.Fatal(err)
	}
	_, humanSecret, _ := s.admin.CreateToken(ctx, client.NewToken{Name: "alice", Role: "release_manager"})
	sess := mcpSession(t, s, agentSecret)

	var status struct {
		Deployment struct {
			State string `json:"state"`
		} `json:"deployment"`
		Health struct {
			Overall struct {
				Failure struct{ Events, Of int64 } `json:"failure"`
			} `json:"overall"`
		} `json:"health"`
	}
	mustCall(t, sess, "deployment_status", map[string]any{"deployment_id": d.ID}, &status)
	if status.Deployment.State != "running" || status.Health.Overall.Failure.Events != failed || status.Health.Overall.Failure.Of != reported {
		t.Fatalf("status = %+v", status)
	}
	var cohorts struct {
		Cohorts []struct {
			Cell    string                     `json:"cell"`
			Failure struct{ Events, Of int64 } `json:"failure"`
		} `json:"cohorts"`
	}
	mustCall(t, sess, "cohort_health", map[string]any{"deployment_id": d.ID}, &cohorts)
	if len(cohorts.Cohorts) == 0 || cohorts.Cohorts[0].Cell != "oem=contoso" || cohorts.Cohorts[0].Failure.Events != failed {
		t.Fatalf("cohorts = %+v", cohorts)
	}
	mustCall(t, sess, "pause_deployment", map[string]any{"deployment_id": d.ID, "reason": "30 of 60 installs failed, all on oem=contoso"}, nil)
	var hold struct{ ID string }
	mustCall(t, sess, "create_hold", map[string]any{"product": "os", "version": "5.0", "rule": `device.attributes["oem"] == "contoso"`,
		"reason": "every contoso install of 5.0 failed (30/30)"}, &hold)
	// The hold is in force for the next check-in.
	r, _ := s.device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-000", Attributes: map[string]string{"oem": "contoso"},
		Installed: []client.Installed{{Product: "os", Version: "4.0"}}})
	for _, o := range r.Offers {
		t.Fatalf("a held device was offered %+v", o)
	}

	// Resume: within budget, applied at once.
	var plan struct {
		Hash         string `json:"plan_hash"`
		WithinBudget bool   `json:"within_budget"`
		Forecast     struct {
			NewlyExposed     int64   `json:"newly_exposed"`
			ExpectedFailures float64 `json:"expected_failures"`
		} `json:"forecast"`
	}
	mustCall(t, sess, "plan_change", map[string]any{"action": "resume", "deployment_id": d.ID, "reason": "contoso held; others healthy"}, &plan)
	if !plan.WithinBudget || plan.Forecast.NewlyExposed > 30 {
		t.Fatalf("resume plan = %+v", plan)
	}
	var applied struct {
		Applied bool `json:"applied"`
	}
	mustCall(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, &applied)
	if dd, _ := s.admin.Deployment(ctx, d.ID); !applied.Applied || dd.State != "running" {
		t.Fatalf("after apply: %+v, state %s", applied, dd.State)
	}
	if msg := call(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, nil); !strings.Contains(msg, "already applied") {
		t.Fatalf("applying twice: %q", msg)
	}

	// A plan goes stale when the evidence changes after planning.
	mustCall(t, sess, "plan_change", map[string]any{"action": "advance", "deployment_id": d.ID, "reason": "next wave"}, &plan)
	if plan.WithinBudget || plan.Forecast.NewlyExposed != 80 {
		t.Fatalf("advance plan = %+v", plan)
	}
	// A device the first wave is offered to checks in late and reports.
	u := publishedUpdate(t, s, "os", "5.0")
	for i := 0; ; i++ {
		late := installEvents(u, 1, fmt.Sprintf("late-%d", i), 0)
		late[0].DeviceID, late[0].Attributes = fmt.Sprintf("late-%d", i), map[string]string{"oem": "fabrikam"}
		r, err := s.devices(t).send(ctx, late)
		if err != nil {
			t.Fatal(err)
		}
		if r.Accepted == 1 {
			break
		}
	}
	waitFor(t, 30*time.Second, func() bool {
		h, _ := s.admin.DeploymentHealth(ctx, d.ID)
		return h.Health.Overall.Devices["install_succeeded"] == reported-failed+1
	})
	if msg := call(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, nil); !strings.Contains(msg, "stale") {
		t.Fatalf("stale plan applied or refused for another reason: %q", msg)
	}

	// Beyond the budget: an approval request a person decides.
	mustCall(t, sess, "plan_change", map[string]any{"action": "advance", "deployment_id": d.ID, "reason": "next wave"}, &plan)
	var outcome struct {
		Applied  bool `json:"applied"`
		Approval struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"approval"`
	}
	mustCall(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, &outcome)
	if outcome.Applied || outcome.Approval.Status != "pending" {
		t.Fatalf("over-budget apply = %+v", outcome)
	}
	first := outcome.Approval.ID
	mustCall(t, sess, "apply_plan", map[string]any{"plan_hash": plan.Hash}, &outcome)
	if outcome.Approval.ID != first {
		t.Fatalf("applying an over-budget plan twice filed a second request %s", outcome.Approval.ID)
	}
	if dd, _ := s.admin.Deployment(ctx, d.ID); dd.Wave != 0 {
		t.Fatalf("an over-budget plan moved the deployment to wave %d", dd.Wave)
	}
	agentREST := s.admin.WithToken(agentSecret)
	if _, err := agentREST.DecideApproval(ctx, outcome.Approval.ID, true, "self-approval"); !client.IsKind(err, "forbidden") {
		t.Fatalf("the agent approved its own request: %v", err)
	}
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": humanSecret}
	if out, err := run(t, env, "approval", "list", "--status", "pending"); err != nil || !strings.Contains(out, outcome.Approval.ID) {
		t.Fatalf("approval list: %v\n%s", err, out)
	}
	if out, err := run(t, env, "approval", "approve", outcome.Approval.ID, "--reason", "fabrikam healthy, contoso held"); err != nil ||
		!strings.Contains(out, "applied") {
		t.Fatalf("approve: %v\n%s", err, out)
	}
	var ap struct {
		Status string `json:"status"`
	}
	mustCall(t, sess, "get_approval", map[string]any{"approval_id": outcome.Approval.ID, "wait_seconds": 5}, &ap)
	if ap.Status != "applied" {
		t.Fatalf("approval status %q", ap.Status)
	}
	if dd, _ := s.admin.Deployment(ctx, d.ID); dd.Wave != 1 {
		t.Fatalf("approved advance left the deployment at wave %d", dd.Wave)
	}

	// Every step is in the audit log as the agent's.
	es, err := s.admin.Audit(ctx, client.AuditFilter{Actor: "token:" + agentTok.ID + "*", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range es {
		got[e.Action] = true
	}
	for _, want := range []string{"deployment.paused", "hold.create", "deployment.resumed", "approval.request", "deployment.advanced"} {
		if !got[want] {
			t.Errorf("audit log lacks the agent's %s: %v", want, got)
		}
	}
}

func publishedUpdate(t *testing.T, s *server, product, version string) client.Update {
	t.Helper()
	us, err := s.admin.Updates(context.Background(), product)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Version == version {
			return u
		}
	}
	t.Fatalf("no %s %s", product, version)
	return client.Update{}
}

// TestMCPTools: the Go SDK client lists the tools (each with input and
// output schemas) and calls every one with typed results; a tool the token
// may not use fails with a clear error; resources and prompts work.
func TestMCPTools(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	d, _, _ := regressedDeployment(t, s)
	sess := mcpSession(t, s, s.token)
	tools, err := sess.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]map[string]any{
		"list_products": {}, "list_updates": {"product": "os"}, "list_deployments": {}, "list_holds": {},
		"deployment_status": {"deployment_id": d.ID}, "cohort_health": {"deployment_id": d.ID},
		"explain_device": {"device_id": "dev-001"}, "recent_audit": {"limit": 5}, "forecast_next_wave": {"deployment_id": d.ID},
		"create_hold":      {"product": "os", "rule": `device.attributes["oem"] == "contoso"`, "reason": "test"},
		"pause_deployment": {"deployment_id": d.ID, "reason": "test"},
		"plan_change":      {"action": "resume", "deployment_id": d.ID, "reason": "test"},
	}
	var planHash string
	order := []string{"list_products", "list_updates", "list_deployments", "list_holds", "deployment_status", "cohort_health",
		"explain_device", "recent_audit", "forecast_next_wave", "create_hold", "pause_deployment", "plan_change", "apply_plan",
		"get_approval", "halt_deployment", "cancel_deployment", "withdraw_update", "rollback_deployment"}
	if len(tools.Tools) != len(order) {
		t.Fatalf("%d tools listed, %d expected", len(tools.Tools), len(order))
	}
	for _, tl := range tools.Tools {
		if tl.Description == "" || tl.InputSchema == nil || tl.OutputSchema == nil {
			t.Errorf("tool %s lacks a description or schemas", tl.Name)
		}
	}
	for _, name := range order {
		a := args[name]
		switch name {
		case "apply_plan":
			a = map[string]any{"plan_hash": planHash}
		case "get_approval":
			// The admin token has no budget: an approval request it may read.
			var p struct {
				Hash string `json:"plan_hash"`
			}
			mustCall(t, sess, "plan_change", map[string]any{"action": "advance", "deployment_id": d.ID, "reason": "test"}, &p)
			var o struct{ Approval struct{ ID string } }
			mustCall(t, sess, "apply_plan", map[string]any{"plan_hash": p.Hash}, &o)
			a = map[string]any{"approval_id": o.Approval.ID}
		case "halt_deployment", "cancel_deployment":
			d2 := publishSmall(t, s, "agent-"+name[:4], "1.0")
			dep, err := s.admin.Deploy(ctx, d2.Product, "1.0")
			if err != nil {
				t.Fatal(err)
			}
			a = map[string]any{"deployment_id": dep.ID, "reason": "test"}
		}
		if name == "withdraw_update" {
			u := publishSmall(t, s, "agent-wd", "1.0")
			a = map[string]any{"update_id": u.ID, "reason": "test"}
		}
		var badID string
		if name == "rollback_deployment" {
			publishSmall(t, s, "agent-rb", "1.0")
			publishSmall(t, s, "agent-rb", "1.1")
			bad, err := s.admin.Deploy(ctx, "agent-rb", "1.1")
			if err != nil {
				t.Fatal(err)
			}
			badID = bad.ID
			a = map[string]any{"deployment_id": bad.ID, "to": "1.0", "reason": "boot loop"}
		}
		var out map[string]any
		mustCall(t, sess, name, a, &out)
		if name == "withdraw_update" && out["state"] != "withdrawn" {
			t.Fatalf("withdraw_update answered %v", out)
		}
		if name == "rollback_deployment" && (out["version"] != "1.0" || out["rollback_of"] != badID) {
			t.Fatalf("rollback_deployment answered %v", out)
		}
		if len(out) == 0 {
			t.Errorf("%s: empty result", name)
		}
		if name == "plan_change" {
			planHash, _ = out["plan_hash"].(string)
		}
	}
	// A viewer may look but not act; the error says why.
	_, viewer, _ := s.admin.CreateToken(ctx, client.NewToken{Name: "v", Role: "viewer"})
	vs := mcpSession(t, s, viewer)
	mustCall(t, vs, "list_deployments", map[string]any{}, nil)
	if msg := call(t, vs, "pause_deployment", map[string]any{"deployment_id": d.ID, "reason": "x"}, nil); !strings.Contains(msg, "forbidden") ||
		!strings.Contains(msg, "may not reduce") {
		t.Fatalf("viewer pausing: %q", msg)
	}
	// A scoped token sees nothing of other products.
	_, scoped, _ := s.admin.CreateToken(ctx, client.NewToken{Name: "a", Role: "agent", Products: []string{"agent-halt"}})
	ss := mcpSession(t, s, scoped)
	var ds struct{ Deployments []struct{ ID string } }
	mustCall(t, ss, "list_deployments", map[string]any{}, &ds)
	for _, x := range ds.Deployments {
		if x.ID == d.ID {
			t.Fatal("a scoped token listed another product's deployment")
		}
	}
	if msg := call(t, ss, "deployment_status", map[string]any{"deployment_id": d.ID}, nil); !strings.Contains(msg, "forbidden") {
		t.Fatalf("scoped token read another product: %q", msg)
	}
	// Bad arguments are refused with the field named; oversized requests too.
	if msg := call(t, sess, "create_hold", map[string]any{"product": "os", "rule": "device.nope(", "reason": "x"}, nil); !strings.Contains(msg, "rule") {
		t.Fatalf("bad CEL: %q", msg)
	}
	// Resource and prompt.
	res, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{URI: "ringmaster://deployments/" + d.ID + "/health"})
	if err != nil || len(res.Contents) != 1 || !strings.Contains(res.Contents[0].Text, `"overall"`) {
		t.Fatalf("health resource: %v", err)
	}
	pr, err := sess.GetPrompt(ctx, &mcp.GetPromptParams{Name: "triage_deployment", Arguments: map[string]string{"deployment_id": d.ID}})
	if err != nil || len(pr.Messages) != 1 || !strings.Contains(pr.Messages[0].Content.(*mcp.TextContent).Text, "cohort_health") {
		t.Fatalf("prompt: %v", err)
	}
	// An oversized request is refused (and the transport gives up on it).
	big := mcpSession(t, s, s.token)
	if _, err := big.CallTool(ctx, &mcp.CallToolParams{Name: "list_products", Arguments: map[string]any{"query": strings.Repeat("x", 300<<10)}}); err == nil ||
		!strings.Contains(err.Error(), "Too Large") {
		t.Fatalf("a 300 KiB request: %v", err)
	}
	// No token, no MCP.
	if _, err := mcp.NewClient(&mcp.Implementation{Name: "anon"}, nil).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.url + "/mcp"}, nil); err == nil {
		t.Fatal("connected without a token")
	}
}

// TestMCPStdio: `ringmaster mcp` answers initialize and tools/list on
// stdio, relaying to the server with its token.
func TestMCPStdio(t *testing.T) {
	s := startServer(t, "")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "mcp", "--url", s.url)
	cmd.Env = append(os.Environ(), "RINGMASTER_TEST_CHILD=serve", "RINGMASTER_TOKEN="+s.token)
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "local-agent", Version: "1"}, nil).
		Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if init := sess.InitializeResult(); init.ServerInfo.Name != "ringmaster" || init.Instructions == "" {
		t.Fatalf("initialize: %+v", init)
	}
	tools, err := sess.ListTools(context.Background(), nil)
	if err != nil || len(tools.Tools) < 10 {
		t.Fatalf("tools/list: %v", err)
	}
	var out struct{ Products []struct{ Name string } }
	publishSmall(t, s, "agent", "1.0")
	mustCall(t, sess, "list_products", map[string]any{}, &out)
	if len(out.Products) != 1 || out.Products[0].Name != "agent" {
		t.Fatalf("relayed list_products: %+v", out)
	}
}

// TestMCPStdioDrains: calls piped into `ringmaster mcp` are all answered
// before it exits at the end of its input, slow ones included.
func TestMCPStdioDrains(t *testing.T) {
	s := startServer(t, "")
	publishSmall(t, s, "agent", "1.0")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "mcp", "--url", s.url)
	cmd.Env = append(os.Environ(), "RINGMASTER_TEST_CHILD=serve", "RINGMASTER_TOKEN="+s.token)
	cmd.Stdin = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pipe","version":"1"}}}
{"jsonrpc":"2.0","method":"notifications/initialized"}
{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"list_products","arguments":{}}}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"list_deployments","arguments":{}}}
{"jsonrpc":"2.0","id":"last","method":"tools/list"}
`)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ringmaster mcp: %v\n%s", err, stderr.String())
	}
	ids := map[string]string{}
	for line := range strings.Lines(string(out)) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Result json.RawMessage `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON-RPC: %q", line)
		}
		ids[string(m.ID)] = string(m.Result)
	}
	for _, id := range []string{"1", "2", "3", `"last"`} {
		if ids[id] == "" {
			t.Errorf("request %s was not answered before exit; got %d answers:\n%s", id, len(ids), out)
		}
	}
	if !strings.Contains(ids["2"], "agent") {
		t.Errorf("list_products answer: %s", ids["2"])
	}
}
