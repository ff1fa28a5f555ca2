package app_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	"go.yaml.in/yaml/v3"

	"github.com/ringmaster/ringmaster/api"
	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/console"
	"github.com/ringmaster/ringmaster/internal/httpapi"
)

// conformance is an http.RoundTripper that checks every response the
// server gives against the OpenAPI document (status documented, body as
// the schema says), and notes which routes it has seen answered.
type conformance struct {
	t      *testing.T
	v      validator.Validator
	routes *http.ServeMux // the server's patterns, to name each request's route
	next   http.RoundTripper

	// paths is the document as plain YAML, to look up what it declares.
	paths map[string]map[string]yaml.Node

	mu   sync.Mutex
	seen map[string][]int // route pattern -> statuses checked
}

func newConformance(t *testing.T, routes []httpapi.Route) *conformance {
	t.Helper()
	doc, err := libopenapi.NewDocument(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, config.WithStrictMode(), config.WithRejectUnsupportedBodyContent(),
		// Every response carries these; the document says so once, in info.
		config.WithStrictIgnoredHeadersExtra("X-Request-Id", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
			"Content-Security-Policy", "Strict-Transport-Security"),
		// Maps the document declares open (device attributes, installed
		// versions, an audit entry's before and after): any key is right.
		config.WithStrictIgnorePaths("$.body.attributes.*", "$.body.installed.*", "$.body.**.attributes.*", "$.body.**.installed.*", "$.body.**.devices.*",
			"$.body.entries[*].before.**", "$.body.entries[*].after.**",
			// TUF's specification, not this document, defines signed metadata.
			"$.body.signed.**"))
	if len(errs) > 0 {
		t.Fatalf("openapi.yaml does not load: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.yaml is not a valid OpenAPI document: %s: %s", e.Message, e.Reason)
		}
	}
	mux := http.NewServeMux()
	for _, r := range routes {
		mux.Handle(r.Pattern, http.NotFoundHandler())
	}
	c := &conformance{t: t, v: v, routes: mux, next: http.DefaultTransport, seen: map[string][]int{}}
	var plain struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &plain); err != nil {
		t.Fatal(err)
	}
	c.paths = plain.Paths
	return c
}

// schemaDeclared reports whether the document gives a JSON schema for a
// JSON answer of route pattern with status code: a validator passes a body
// the document says nothing about, so this is checked first.
func (c *conformance) schemaDeclared(pattern string, code int) bool {
	method, path, _ := strings.Cut(strings.Replace(pattern, "...}", "}", 1), " ")
	var op struct {
		Responses map[string]struct {
			Ref     string                    `yaml:"$ref"`
			Content map[string]map[string]any `yaml:"content"`
		} `yaml:"responses"`
	}
	node := c.paths[path][strings.ToLower(method)]
	if node.Decode(&op) != nil {
		return false
	}
	r, ok := op.Responses[fmt.Sprint(code)]
	if !ok {
		return false
	}
	return r.Ref != "" || r.Content["application/json"]["schema"] != nil
}

func (c *conformance) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		reqBody, _ = io.ReadAll(req.Body)
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	_, pattern := c.routes.Handler(req)
	if _, path, _ := strings.Cut(pattern, " "); path == "/{$}" || strings.HasPrefix(path, console.Prefix) {
		// The console's pages are HTML for people, not API (docs/console.md).
		c.mu.Lock()
		c.seen[pattern] = append(c.seen[pattern], resp.StatusCode)
		c.mu.Unlock()
		return resp, nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && pattern != "POST /mcp" && !c.schemaDeclared(pattern, resp.StatusCode) {
		c.t.Errorf("%s answered %d with JSON, and openapi.yaml gives no schema for it: %.200s", pattern, resp.StatusCode, body)
	}
	c.mu.Lock()
	c.seen[pattern] = append(c.seen[pattern], resp.StatusCode)
	c.mu.Unlock()
	if strings.Contains(pattern, "...}") {
		// OpenAPI path parameters cannot span segments, so the document
		// describes GET /v1/tuf/targets/{path} for PRODUCT/VERSION/NAME
		// and no validator can match a real target path to it.
		return resp, nil
	}
	check := *resp
	check.Body = io.NopCloser(bytes.NewReader(body))
	checkReq := req.Clone(context.Background())
	checkReq.Body = io.NopCloser(bytes.NewReader(reqBody))
	if ok, errs := c.v.ValidateHttpResponse(checkReq, &check); !ok {
		var msgs []string
		for _, e := range errs {
			msg := e.Message
			if e.Reason != "" && e.Reason != e.Message {
				msg += ": " + e.Reason
			}
			for _, se := range e.SchemaValidationErrors {
				msg += fmt.Sprintf("\n      at %s: %s", se.FieldPath, se.Reason)
			}
			msgs = append(msgs, msg)
		}
		c.t.Errorf("%s %s answered %d, which openapi.yaml does not describe:\n    %s\n    body: %.300s",
			req.Method, req.URL.Path, resp.StatusCode, strings.Join(msgs, "\n    "), body)
	}
	return resp, nil
}

func (c *conformance) client(t *testing.T, url, token string) *client.Client {
	t.Helper()
	cl, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return cl.WithHTTPClient(&http.Client{Transport: c})
}

// TestOpenAPIDescribesResponses drives the API as its users do (publish,
// deploy, check in, report, steer, secure) and then calls every route with
// unknown ids, and checks every real response against api/openapi.yaml
// with a schema validator: each status must be documented and each body
// must match its schema.
func TestOpenAPIDescribesResponses(t *testing.T) {
	s := startServer(t, "")
	conf := newConformance(t, s.Routes())
	ctx := context.Background()
	admin := conf.client(t, s.url, s.token)
	anonymous := conf.client(t, s.url, "")

	// Publish, deploy in waves with approvals, steer, hold, explain.
	path, _ := writeRandomFile(t, 4096)
	if _, err := admin.PutProduct(ctx, client.Product{Name: "agent", Title: "Agent"}); err != nil {
		t.Fatal(err)
	}
	u, err := admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0", Kind: "app"}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	raw := &http.Client{Transport: conf}
	get := func(path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	_, err = admin.Updates(ctx, "agent")
	must("list updates", err)
	_, err = admin.Update(ctx, u.ID)
	must("get update", err)
	_, err = admin.Products(ctx)
	must("list products", err)
	_, err = admin.Product(ctx, "agent")
	must("get product", err)
	_, err = admin.Whoami(ctx)
	must("whoami", err)
	_, err = admin.PutRing(ctx, client.Ring{Name: "canary", Rank: 0, Members: []string{"dev-1"}})
	must("put ring", err)
	_, err = admin.Rings(ctx)
	must("list rings", err)
	get("/v1/rings/canary")
	d, err := admin.DeployPlan(ctx, "agent", "1.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1d", RequireApproval: true})
	must("deploy", err)
	_, err = admin.Deployments(ctx, "")
	must("list deployments", err)
	_, err = admin.Deployment(ctx, d.ID)
	must("get deployment", err)
	_, err = admin.Command(ctx, d.ID, "approve", "canary")
	must("approve", err)
	_, err = admin.Command(ctx, d.ID, "pause", "look")
	must("pause", err)
	_, err = admin.Command(ctx, d.ID, "approve", "too early")
	if err == nil {
		t.Fatal("a second approval while no wave waits was accepted")
	}
	_, err = admin.Command(ctx, d.ID, "resume", "")
	if err == nil {
		t.Fatal("resume without a reason was accepted")
	}
	_, err = admin.Command(ctx, d.ID, "resume", "fine")
	must("resume", err)
	_, err = admin.DeploymentEvents(ctx, d.ID)
	must("deployment events", err)
	h, err := admin.CreateHold(ctx, "agent", "1.0", `device.attributes["oem"] == "fabrikam"`, "crashes")
	must("create hold", err)
	_, err = admin.Holds(ctx, "agent", "")
	must("list holds", err)
	get("/v1/holds/" + h.ID)
	_, err = admin.ReleaseHold(ctx, h.ID, "fixed")
	must("release hold", err)

	// Devices: enroll, check in, report; the admin sees them.
	key, secret, err := admin.IssueEnrollmentKey(ctx, client.NewEnrollmentKey{Name: "lab"})
	must("enrollment key", err)
	_, err = admin.EnrollmentKeys(ctx)
	must("list enrollment keys", err)
	enrolled, err := anonymous.Enroll(ctx, secret, "dev-1")
	must("enroll", err)
	dev := conf.client(t, s.url, enrolled.Credential)
	resp, err := dev.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Attributes: map[string]string{"oem": "contoso"},
		Installed: []client.Installed{{Product: "agent", Version: "0.9"}}})
	must("check in", err)
	if len(resp.Offers) == 1 {
		_, err = dev.SendEvents(ctx, []client.DeviceEvent{resp.Offers[0].Event("ev-1", "dev-1", "install_succeeded", time.Now())})
		must("events", err)
		must("download", dev.Download(ctx, resp.Offers[0].Payloads[0], io.Discard, 1024))
	}
	_, err = dev.SendEvents(ctx, []client.DeviceEvent{{EventID: "forged-1", DeviceID: "dev-1", UpdateID: u.ID, Type: "install_failed", Time: time.Now()}})
	must("uncited events", err)
	_, err = anonymous.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-2"})
	must("anonymous check in", err)
	unauth, err := anonymous.SendEvents(ctx, []client.DeviceEvent{{EventID: "anon-1", DeviceID: "dev-2", UpdateID: u.ID, Type: "install_failed", Time: time.Now()},
		{EventID: "bad id!", DeviceID: "dev-2", UpdateID: u.ID, Type: "exploded", Time: time.Now()}})
	must("events without a credential", err)
	if unauth.Unauthenticated != 1 || unauth.Rejected != 1 {
		t.Fatalf("events without a credential: %+v", unauth)
	}
	_, err = admin.Explain(ctx, client.ExplainRequest{DeviceID: "kiosk-9", Attributes: map[string]string{"oem": "fabrikam"},
		Installed: map[string]string{"agent": "0.9"}})
	must("explain", err)
	// The registry writes sightings in batches: wait for dev-1's.
	for {
		if _, err := s.admin.Explain(ctx, client.ExplainRequest{DeviceID: "dev-1"}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	get("/v1/devices/dev-1")
	_, err = admin.Devices(ctx, client.DeviceFilter{Product: "agent", Version: "0.9", Attributes: map[string]string{"oem": "contoso"}, Count: true, Limit: 1})
	must("list devices", err)
	_, err = admin.Devices(ctx, client.DeviceFilter{SeenAfter: time.Now().Add(-time.Hour), Cursor: "dev-0"})
	must("list devices from a cursor", err)
	_, err = admin.ProductVersions(ctx, "agent")
	must("product versions", err)
	get("/v1/tuf/1.root.json")
	get("/v1/tuf/timestamp.json")
	get("/healthz")
	get("/readyz")
	get("/metrics")
	get("/v1/openapi.yaml")
	_, err = admin.DeploymentHealth(ctx, d.ID)
	must("health", err)
	_, err = admin.ResetDevice(ctx, "dev-1", "reflashed")
	must("reset device", err)
	_, err = admin.RevokeEnrollmentKey(ctx, key.ID, "done")
	must("revoke enrollment key", err)

	// Security: tokens, audit, TUF.
	tok, _, err := admin.CreateToken(ctx, client.NewToken{Name: "ci", Role: "publisher", TTL: "90d"})
	must("create token", err)
	_, err = admin.Tokens(ctx)
	must("list tokens", err)
	_, err = admin.RevokeToken(ctx, tok.ID, "unused")
	must("revoke token", err)
	_, err = admin.Audit(ctx, client.AuditFilter{})
	must("audit", err)
	_, err = admin.VerifyAudit(ctx)
	must("verify audit", err)
	_, err = admin.TUFStatus(ctx)
	must("tuf status", err)
	_, err = admin.RotateOnlineKeys(ctx, "scheduled")
	must("rotate", err)
	_, err = admin.Approvals(ctx, "")
	must("approvals", err)
	_, err = admin.Command(ctx, d.ID, "halt", "enough")
	must("halt", err)

	// Every route once more, with ids that do not exist and empty bodies:
	// the errors must be documented too.
	fill := strings.NewReplacer("{name}", "nope", "{sha256}", strings.Repeat("a", 64), "{file}", "99.root.json",
		"{path...}", "nope/1.0/x", "{command}", "pause", "{decision}", "approve", "{id}", "x_00000000000000000000000000",
		"{$}", "", "{kind}", "tokens", "{action}", "release")
	for _, r := range s.Routes() {
		method, p, _ := strings.Cut(r.Pattern, " ")
		for _, tok := range []string{s.token, ""} {
			req, _ := http.NewRequest(method, s.url+fill.Replace(p), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
			resp, err := raw.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	for _, r := range s.Routes() {
		if len(conf.seen[r.Pattern]) == 0 {
			t.Errorf("%s was never checked", r.Pattern)
		}
	}
}
