package agents

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// controller speaks DDI the way a hawkBit client does, for the protocol's
// corners the real clients do not reach on demand.
type controller struct {
	t          *testing.T
	url, id    string
	auth       string // "TargetToken rmd_…", "GatewayToken rme_…" or ""
	lastStatus int
}

func (c *controller) do(method, path, body string) []byte {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+"/default/controller/v1/"+c.id+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	c.lastStatus = res.StatusCode
	if res.StatusCode >= 400 && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		c.t.Fatalf("%s %s: %d with %q, not a problem", method, path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return b
}

// poll returns the poll's links by name.
func (c *controller) poll() map[string]string {
	c.t.Helper()
	var base struct {
		Config struct {
			Polling struct {
				Sleep string `json:"sleep"`
			} `json:"polling"`
		} `json:"config"`
		Links map[string]struct {
			Href string `json:"href"`
		} `json:"_links"`
	}
	b := c.do("GET", "", "")
	if c.lastStatus != 200 || json.Unmarshal(b, &base) != nil || base.Config.Polling.Sleep == "" {
		c.t.Fatalf("poll %s: %d %s", c.id, c.lastStatus, b)
	}
	out := map[string]string{}
	for k, l := range base.Links {
		out[k] = l.Href
	}
	return out
}

// path is a link's path below the controller.
func (c *controller) path(href string) string {
	_, p, ok := strings.Cut(href, "/controller/v1/"+c.id)
	if !ok {
		c.t.Fatalf("link %q is not the controller's", href)
	}
	p, _, _ = strings.Cut(p, "?")
	return p
}

// TestDDIProtocol: holds and pauses stop offers to DDI controllers as to
// native devices; a cancelled deployment's action is cancelled; feedback
// counts only from authenticated controllers the server offered the
// update; a gateway token speaks only for the controllers its key
// enrolled; malformed and oversized bodies get a 4xx and store nothing.
func TestDDIProtocol(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0; c.DDI.Product = "gateway" })
	file := filepath.Join(t.TempDir(), "bundle.raucb")
	if err := os.WriteFile(file, []byte(strings.Repeat("rauc bundle ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "gateway", Version: "2.0.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "site-a", "1h")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := s.Admin.CreateEnrollmentKey(ctx, "site-b", "1h")
	if err != nil {
		t.Fatal(err)
	}
	gw := func(id string) *controller {
		return &controller{t: t, url: s.URL, id: id, auth: "GatewayToken " + key}
	}

	// Before any deployment: nothing to do but send configData.
	a := gw("ctl-a")
	if links := a.poll(); links["deploymentBase"] != "" || links["configData"] == "" {
		t.Fatalf("before deploy: %v", links)
	}
	a.do("PUT", "/configData", `{"data": {"board": "b1", "site": "berlin"}}`)
	if a.lastStatus != 200 {
		t.Fatalf("configData: %d", a.lastStatus)
	}
	dep, err := s.Admin.Deploy(ctx, "gateway", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	links := a.poll()
	if links["deploymentBase"] == "" || links["configData"] != "" {
		t.Fatalf("deployed: %v", links)
	}
	var base struct {
		ID         string `json:"id"`
		Deployment struct {
			Download, Update string
			Chunks           []struct {
				Version   string `json:"version"`
				Artifacts []struct {
					Filename string            `json:"filename"`
					Size     int64             `json:"size"`
					Hashes   map[string]string `json:"hashes"`
				} `json:"artifacts"`
			} `json:"chunks"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(a.do("GET", a.path(links["deploymentBase"]), ""), &base); err != nil || len(base.Deployment.Chunks) != 1 ||
		base.Deployment.Chunks[0].Version != "2.0.0" || len(base.Deployment.Chunks[0].Artifacts) != 1 || base.Deployment.Update != "attempt" {
		t.Fatalf("deploymentBase: %+v, %v", base, err)
	}
	art := base.Deployment.Chunks[0].Artifacts[0]
	if art.Filename != "bundle.raucb" || art.Size != 12000 || len(art.Hashes["sha1"]) != 40 || len(art.Hashes["md5"]) != 32 || len(art.Hashes["sha256"]) != 64 {
		t.Fatalf("artifact: %+v", art)
	}
	feedback := a.path(links["deploymentBase"]) + "/feedback"

	// Bad bodies: 4xx, and nothing counted.
	for _, body := range []string{`{`, `{"status": {"execution": "exploded"}}`, `{"id": [1], "status": {"execution": "closed"}}`, strings.Repeat(" ", 70<<10)} {
		a.do("POST", feedback, body)
		if a.lastStatus < 400 || a.lastStatus >= 500 {
			t.Fatalf("feedback %.30q: %d", body, a.lastStatus)
		}
	}
	a.do("PUT", "/configData", `{"data": {"board": 7}}`)
	if a.lastStatus != 400 {
		t.Fatalf("configData with a number: %d", a.lastStatus)
	}
	a.do("POST", "/deploymentBase/1/feedback", `{"status": {"execution": "closed", "result": {"finished": "success"}}}`)
	if a.lastStatus != 404 {
		t.Fatalf("feedback on an unknown action: %d", a.lastStatus)
	}

	// An unauthenticated controller is served but its reports do not
	// count; an authenticated one's do, once per device and outcome.
	anon := &controller{t: t, url: s.URL, id: "ctl-anon"}
	anon.do("PUT", "/configData", `{"data": {"board": "b1"}}`)
	anonLinks := anon.poll()
	anon.do("POST", anon.path(anonLinks["deploymentBase"])+"/feedback", `{"id": "1", "status": {"execution": "closed", "result": {"finished": "failure"}}}`)
	for range 2 {
		a.do("POST", feedback, `{"id": 5, "time": "20261202T101010", "status": {"execution": "closed", "result": {"finished": "success"}, "details": ["done"]}}`)
		if a.lastStatus != 200 {
			t.Fatalf("feedback: %d", a.lastStatus)
		}
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == 1
	})
	if h, _ := s.Admin.DeploymentHealth(ctx, dep.ID); h.Health.Overall.Devices["install_failed"] != 0 {
		t.Fatalf("an unauthenticated failure counted: %+v", h.Health.Overall)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, "ctl-a")
		return err == nil && d.Installed["gateway"] == "2.0.0" && d.Attributes["site"] == "berlin"
	})
	if links := a.poll(); links["deploymentBase"] != "" {
		t.Fatalf("offered again once installed: %v", links)
	}

	// A gateway token speaks for the controllers its key enrolled only.
	other := &controller{t: t, url: s.URL, id: "ctl-a", auth: "GatewayToken " + otherKey}
	other.do("GET", "", "")
	if other.lastStatus != 403 {
		t.Fatalf("another key's gateway token for ctl-a: %d", other.lastStatus)
	}
	for _, auth := range []string{"TargetToken rmd_nonsense", "Bearer " + key, "GatewayToken rme_unknown"} {
		bad := &controller{t: t, url: s.URL, id: "ctl-a", auth: auth}
		bad.do("GET", "", "")
		if bad.lastStatus != 401 {
			t.Fatalf("%s: %d", auth, bad.lastStatus)
		}
	}
	wrongTenant, _ := http.Get(s.URL + "/tenant-x/controller/v1/ctl-a")
	if wrongTenant.StatusCode != 404 {
		t.Fatalf("unknown tenant: %d", wrongTenant.StatusCode)
	}
	wrongTenant.Body.Close()

	// A hold on a cohort stops its offers; others are still offered.
	held := gw("ctl-held")
	held.do("PUT", "/configData", `{"data": {"board": "b2"}}`)
	b := gw("ctl-b")
	b.do("PUT", "/configData", `{"data": {"board": "b1"}}`)
	if _, err := s.Admin.CreateHold(ctx, "gateway", "2.0.0", `device.attributes["board"] == "b2"`, "b2 boards brick"); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool { return held.poll()["deploymentBase"] == "" })
	bLinks := b.poll()
	if bLinks["deploymentBase"] == "" {
		t.Fatalf("a device outside the hold is not offered: %v", bLinks)
	}
	var ex client.Explanation
	apptest.WaitFor(t, 30*time.Second, func() bool { // the registry is written in batches
		ex, err = s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: "ctl-held"})
		return err == nil
	})
	if ex.Device.Source != "registry" || len(ex.Decisions) != 1 || ex.Decisions[0].FailedStep != "hold" {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
	// b takes the action; a pause stops new offers, not b's install.
	b.do("GET", b.path(bLinks["deploymentBase"]), "")
	b.do("POST", b.path(bLinks["deploymentBase"])+"/feedback", `{"status": {"execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 0, "of": 1}}}}`)
	if _, err := s.Admin.Command(ctx, dep.ID, "pause", "looking into b2"); err != nil {
		t.Fatal(err)
	}
	c := gw("ctl-c")
	c.do("PUT", "/configData", `{"data": {"board": "b1"}}`)
	apptest.WaitFor(t, 30*time.Second, func() bool { return c.poll()["deploymentBase"] == "" })
	b.do("GET", b.path(bLinks["deploymentBase"]), "")
	if b.lastStatus != 200 {
		t.Fatalf("b's action under way, paused: %d", b.lastStatus)
	}
	// Cancelled: b is told to cancel its action, and acknowledges.
	if _, err := s.Admin.CancelDeployment(ctx, dep.ID, "b2 boards brick"); err != nil {
		t.Fatal(err)
	}
	var cancel string
	apptest.WaitFor(t, 30*time.Second, func() bool { cancel = b.poll()["cancelAction"]; return cancel != "" })
	var ca struct {
		ID     string `json:"id"`
		Cancel struct {
			StopID string `json:"stopId"`
		} `json:"cancelAction"`
	}
	if err := json.Unmarshal(b.do("GET", b.path(cancel), ""), &ca); err != nil || ca.Cancel.StopID == "" || ca.Cancel.StopID != ca.ID {
		t.Fatalf("cancelAction: %+v, %v", ca, err)
	}
	b.do("POST", b.path(cancel)+"/feedback", `{"id": "`+ca.ID+`", "status": {"execution": "closed", "result": {"finished": "success"}, "details": ["cancellation acknowledged."]}}`)
	if links := b.poll(); len(links) != 0 {
		t.Fatalf("after the cancellation: %v", links)
	}
}

// TestDDIRequiresCredentials: with device_auth required, a controller
// without a credential is refused and registers nothing.
func TestDDIRequiresCredentials(t *testing.T) {
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceAuth = "required" })
	anon := &controller{t: t, url: s.URL, id: "ctl-anon"}
	anon.do("GET", "", "")
	if anon.lastStatus != 401 {
		t.Fatalf("no credential: %d", anon.lastStatus)
	}
	anon.do("PUT", "/configData", `{"data": {"board": "b1"}}`)
	if anon.lastStatus != 401 {
		t.Fatalf("no credential: %d", anon.lastStatus)
	}
	time.Sleep(200 * time.Millisecond) // a registry flush
	if _, err := s.Admin.Device(context.Background(), "ctl-anon"); err == nil {
		t.Fatal("a refused controller was registered")
	}
}
