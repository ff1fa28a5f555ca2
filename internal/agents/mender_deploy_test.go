package agents

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// singleFileArtifact makes a Mender artifact with mender-artifact for
// Mender's single-file update module: it installs name into destDir. Its
// file is 8 KiB of random bytes (the client refuses downloads under 4 KiB).
func singleFileArtifact(t *testing.T, tool, dir, artifactName, deviceType, destDir, name string) (path string, file []byte) {
	t.Helper()
	file = make([]byte, 8<<10)
	_, _ = rand.Read(file)
	work := filepath.Join(dir, artifactName)
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(work, "dest_dir"), []byte(destDir))
	write(t, filepath.Join(work, "filename"), []byte(name))
	write(t, filepath.Join(work, name), file)
	path = filepath.Join(dir, artifactName+".mender")
	if out, err := exec.Command(tool, "write", "module-image", "-T", "single-file", "-n", artifactName, "-t", deviceType, "-o", path,
		"-f", filepath.Join(work, "dest_dir"), "-f", filepath.Join(work, "filename"), "-f", filepath.Join(work, name)).CombinedOutput(); err != nil {
		t.Fatalf("mender-artifact: %v\n%s", err, out)
	}
	return path, file
}

// menderDevice speaks the Mender device API the way the Mender client
// does, for the corners the real client does not reach on demand.
type menderDevice struct {
	t     *testing.T
	url   string
	token string
}

// do sends a request; a body is sent chunked, as a client streaming it
// would.
func (m *menderDevice) do(method, path, body string) (int, []byte) {
	m.t.Helper()
	var r io.Reader
	if body != "" {
		r = io.MultiReader(strings.NewReader(body)) // no length: chunked
	}
	req, _ := http.NewRequest(method, m.url+path, r)
	if m.token != "" {
		req.Header.Set("Authorization", "Bearer "+m.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

type menderNext struct {
	ID       string `json:"id"`
	Artifact struct {
		Name   string `json:"artifact_name"`
		Source struct {
			URI    string `json:"uri"`
			Expire string `json:"expire"`
		} `json:"source"`
		DeviceTypes []string `json:"device_types_compatible"`
	} `json:"artifact"`
}

// next asks for the next deployment (POST v2) running artifact on
// deviceType; nil when there is none.
func (m *menderDevice) next(artifact, deviceType string) *menderNext {
	m.t.Helper()
	code, b := m.do("POST", "/api/devices/v2/deployments/device/deployments/next",
		`{"device_provides": {"artifact_name": "`+artifact+`", "device_type": "`+deviceType+`"}, "update_control_map": true}`)
	switch code {
	case 204:
		return nil
	case 200:
		var n menderNext
		if err := json.Unmarshal(b, &n); err != nil {
			m.t.Fatal(err)
		}
		return &n
	}
	m.t.Fatalf("next: %d %s", code, b)
	return nil
}

func (m *menderDevice) status(deployment, status string) int {
	m.t.Helper()
	code, _ := m.do("PUT", "/api/devices/v1/deployments/device/deployments/"+deployment+"/status", `{"status": "`+status+`"}`)
	return code
}

// TestMenderDeploymentsProtocol: the deployment API as the Mender client
// uses it, against a product publishing Mender artifacts: nothing before
// a deployment; then the artifact for the device's type in all three
// request forms, with a signed link that opens that payload only;
// statuses as events; bad bodies 4xx; a hold, a pause and a cancellation
// as in the native protocol; explain for a Mender device.
func TestMenderDeploymentsProtocol(t *testing.T) {
	ctx := context.Background()
	tool := need(t, "mender-artifact", "mender-artifact")
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0; c.Mender.Product = "kiosk-app" })
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "kiosk-app", Formats: map[string]string{"mender": "mender"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	art, file := singleFileArtifact(t, tool, dir, "kiosk-2.0.0", "kiosk-v1", "/opt/kiosk", "kiosk.bin")
	artBytes, _ := os.ReadFile(art)
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "kiosk-app", Version: "2.0.0"}, []string{art}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "kiosks", "1h")
	if err != nil {
		t.Fatal(err)
	}
	device := func(id string) *menderDevice {
		code, token := newMenderKey(t).authRequest(t, s.URL, map[string]string{"device_id": id}, key, false)
		if code != 200 {
			t.Fatalf("auth %s: %d %s", id, code, token)
		}
		return &menderDevice{t: t, url: s.URL, token: token}
	}
	k1 := device("kiosk-1")
	if n := k1.next("kiosk-1.0.0", "kiosk-v1"); n != nil {
		t.Fatalf("before a deployment: %+v", n)
	}
	dep, err := s.Admin.Deploy(ctx, "kiosk-app", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	n := k1.next("kiosk-1.0.0", "kiosk-v1")
	if n == nil || n.ID != dep.ID || n.Artifact.Name != "kiosk-2.0.0" || len(n.Artifact.DeviceTypes) != 1 || n.Artifact.DeviceTypes[0] != "kiosk-v1" {
		t.Fatalf("deployed: %+v", n)
	}
	if exp, err := time.Parse(time.RFC3339, n.Artifact.Source.Expire); err != nil || exp.Before(time.Now()) || exp.After(time.Now().Add(2*time.Hour)) {
		t.Fatalf("expire: %q %v", n.Artifact.Source.Expire, err)
	}
	// The other two forms the client falls back to answer alike.
	if code, b := k1.do("POST", "/api/devices/v1/deployments/device/deployments/next", `{"artifact_name": "kiosk-1.0.0", "device_type": "kiosk-v1"}`); code != 200 || !bytes.Contains(b, []byte(dep.ID)) {
		t.Fatalf("POST v1: %d %s", code, b)
	}
	if code, b := k1.do("GET", "/api/devices/v1/deployments/device/deployments/next?artifact_name=kiosk-1.0.0&device_type=kiosk-v1", ""); code != 200 || !bytes.Contains(b, []byte(dep.ID)) {
		t.Fatalf("GET v1: %d %s", code, b)
	}
	if n := k1.next("kiosk-1.0.0", "other-v1"); n != nil {
		t.Fatalf("a device type the artifact is not for: %+v", n)
	}

	// The link opens the artifact without a credential (ranges too), and
	// nothing else.
	get := func(url, rng string) (int, []byte) {
		req, _ := http.NewRequest("GET", url, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if code, b := get(n.Artifact.Source.URI, ""); code != 200 || !bytes.Equal(b, artBytes) {
		t.Fatalf("download: %d, %d bytes of %d", code, len(b), len(artBytes))
	}
	if code, b := get(n.Artifact.Source.URI, "bytes=100-"); code != 206 || !bytes.Equal(b, artBytes[100:]) {
		t.Fatalf("resumed download: %d", code)
	}
	for name, url := range map[string]string{
		"tampered":         strings.Replace(n.Artifact.Source.URI, "signature=", "signature=0", 1),
		"another device":   strings.Replace(n.Artifact.Source.URI, "device=kiosk-1", "device=kiosk-9", 1),
		"stretched expiry": strings.Replace(n.Artifact.Source.URI, "expires=", "expires=9", 1),
	} {
		if code, _ := get(url, ""); code != 403 {
			t.Fatalf("%s link: %d", name, code)
		}
	}
	if len(file) == 0 {
		t.Fatal("no file")
	}

	// Bad requests are 4xx and count nothing.
	for _, c := range []struct {
		dev          *menderDevice
		method, path string
		body         string
		want         int
	}{
		{k1, "POST", "/api/devices/v2/deployments/device/deployments/next", `{`, 400},
		{k1, "POST", "/api/devices/v2/deployments/device/deployments/next", `{"device_provides": {"device_type": "kiosk-v1"}}`, 400},
		{k1, "POST", "/api/devices/v1/deployments/device/deployments/next", `{"artifact_name": "` + strings.Repeat("a", 20<<10) + `"}`, 413},
		{k1, "PUT", "/api/devices/v1/deployments/device/deployments/" + dep.ID + "/status", `{"status": "exploded"}`, 400},
		{k1, "PUT", "/api/devices/v1/deployments/device/deployments/" + dep.ID + "/status", `{"status": "success", "substate": "` + strings.Repeat("x", 8<<10) + `"}`, 413},
		{k1, "PUT", "/api/devices/v1/deployments/device/deployments/dep_nope/status", `{"status": "success"}`, 404},
		{k1, "PUT", "/api/devices/v1/deployments/device/deployments/" + dep.ID + "/log", `{"messages": "x"}`, 400},
		{&menderDevice{t: t, url: s.URL}, "PUT", "/api/devices/v1/deployments/device/deployments/" + dep.ID + "/status", `{"status": "success"}`, 401},
		{&menderDevice{t: t, url: s.URL}, "POST", "/api/devices/v2/deployments/device/deployments/next", `{"device_provides": {"artifact_name": "a", "device_type": "b"}}`, 401},
	} {
		if code, b := c.dev.do(c.method, c.path, c.body); code != c.want {
			t.Fatalf("%s %s %.40q: %d %s, want %d", c.method, c.path, c.body, code, b, c.want)
		}
	}

	// Statuses are events: kiosk-1 succeeds, kiosk-3 fails.
	for _, st := range []string{"downloading", "installing", "success"} {
		if code := k1.status(dep.ID, st); code != 204 {
			t.Fatalf("status %s: %d", st, code)
		}
	}
	if code, b := k1.do("PUT", "/api/devices/v1/deployments/device/deployments/"+dep.ID+"/log",
		`{"messages": [{"timestamp": "2026-12-02T10:00:00Z", "level": "info", "message": "installed"}]}`); code != 204 {
		t.Fatalf("log: %d %s", code, b)
	}
	k3 := device("kiosk-3")
	if n := k3.next("kiosk-1.0.0", "kiosk-v1"); n == nil {
		t.Fatal("kiosk-3 not offered")
	}
	for _, st := range []string{"downloading", "failure"} {
		if code := k3.status(dep.ID, st); code != 204 {
			t.Fatalf("status %s: %d", st, code)
		}
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == 1 && h.Health.Overall.Devices["install_failed"] == 1
	})
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, "kiosk-1")
		return err == nil && d.Installed["kiosk-app"] == "2.0.0"
	})
	if n := k1.next("kiosk-2.0.0", "kiosk-v1"); n != nil {
		t.Fatalf("offered again once installed: %+v", n)
	}

	// A hold on a cohort stops its offers, and explain says so.
	k2 := device("kiosk-2")
	if code, _ := k2.do("PUT", "/api/devices/v1/inventory/device/attributes", `[{"name": "board", "value": "b2"}]`); code != 200 {
		t.Fatalf("inventory: %d", code)
	}
	if _, err := s.Admin.CreateHold(ctx, "kiosk-app", "2.0.0", `device.attributes["board"] == "b2"`, "b2 boards brick"); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool { return k2.next("kiosk-1.0.0", "kiosk-v1") == nil })
	k4 := device("kiosk-4")
	if n := k4.next("kiosk-1.0.0", "kiosk-v1"); n == nil {
		t.Fatal("a device outside the hold is not offered")
	}
	var ex client.Explanation
	apptest.WaitFor(t, 30*time.Second, func() bool { // the registry is written in batches
		ex, err = s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: "kiosk-2"})
		return err == nil && len(ex.Device.Installed) > 0
	})
	if ex.Device.Source != "registry" || len(ex.Decisions) != 1 || ex.Decisions[0].FailedStep != "hold" {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
	// A pause stops new offers, not kiosk-4's install under way.
	if code := k4.status(dep.ID, "downloading"); code != 204 {
		t.Fatalf("downloading: %d", code)
	}
	if _, err := s.Admin.Command(ctx, dep.ID, "pause", "looking into b2"); err != nil {
		t.Fatal(err)
	}
	k5 := device("kiosk-5")
	apptest.WaitFor(t, 30*time.Second, func() bool { return k5.next("kiosk-1.0.0", "kiosk-v1") == nil })
	if code := k4.status(dep.ID, "installing"); code != 204 {
		t.Fatalf("installing, paused: %d", code)
	}
	// Cancelled: kiosk-4's next report is refused (the client abandons the
	// deployment and rolls back); its final report is still taken.
	if _, err := s.Admin.CancelDeployment(ctx, dep.ID, "b2 boards brick"); err != nil {
		t.Fatal(err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool { return k4.status(dep.ID, "rebooting") == 409 })
	if code := k4.status(dep.ID, "failure"); code != 204 {
		t.Fatalf("failure after the cancellation: %d", code)
	}
}

// TestMenderClientInstall: the Mender client (Debian's mender-client 3.x,
// its daemon with a test identity and data directory) authenticates with
// an enrollment key, is offered a single-file artifact made by
// mender-artifact, downloads it by its signed link, installs it with
// Mender's own single-file update module and reports success, which
// counts toward the deployment's health and installs the release in the
// registry; a deployment cancelled before it polls is not installed.
func TestMenderClientInstall(t *testing.T) {
	ctx := context.Background()
	bin := need(t, "mender", "mender-client")
	tool := need(t, "mender-artifact", "mender-artifact")
	installIdentityScript(t)
	installArtifactInfo(t, "kiosk-1.0.0")
	s := apptest.Start(t, "", func(c *config.Config) { c.Mender.Product = "kiosk-app" })
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "kiosk-app", Formats: map[string]string{"mender": "mender"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "installed")
	installed := filepath.Join(target, "kiosk.bin")
	publish := func(version string) ([]byte, client.Deployment) {
		art, file := singleFileArtifact(t, tool, dir, "kiosk-"+version, "kiosk-v1", target, "kiosk.bin")
		if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "kiosk-app", Version: version}, []string{art}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		dep, err := s.Admin.Deploy(ctx, "kiosk-app", version)
		if err != nil {
			t.Fatal(err)
		}
		return file, dep
	}
	file2, dep2 := publish("2.0.0")
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "kiosks", "1h")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	menderConfig(t, data, s.URL, key)
	log, stop := startMenderDaemon(t, bin, data, "kiosk-7")
	apptest.WaitFor(t, 2*time.Minute, func() bool {
		b, err := os.ReadFile(installed)
		return err == nil && bytes.Equal(b, file2)
	})
	apptest.WaitFor(t, time.Minute, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep2.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == 1
	})
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, "kiosk-7")
		return err == nil && d.Installed["kiosk-app"] == "2.0.0" && d.Attributes["artifact_name"] == "kiosk-2.0.0"
	})
	t.Logf("kiosk-7 installed kiosk-2.0.0:\n%s", log.String())

	// 3.0.0 is deployed and cancelled while the client is down; once up
	// again it polls and installs nothing.
	stop()
	_, dep3 := publish("3.0.0")
	if _, err := s.Admin.CancelDeployment(ctx, dep3.ID, "wrong build"); err != nil {
		t.Fatal(err)
	}
	log, _ = startMenderDaemon(t, bin, data, "kiosk-7")
	apptest.WaitFor(t, time.Minute, func() bool { return strings.Count(log.String(), "-> update-check") >= 3 })
	if b, err := os.ReadFile(installed); err != nil || !bytes.Equal(b, file2) {
		t.Fatalf("the cancelled deployment's file was installed: %v", err)
	}
	if h, err := s.Admin.DeploymentHealth(ctx, dep3.ID); err != nil || len(h.Health.Overall.Devices) != 0 {
		t.Fatalf("the cancelled deployment's health: %+v, %v", h.Health.Overall, err)
	}
	if d, err := s.Admin.Device(ctx, "kiosk-7"); err != nil || d.Installed["kiosk-app"] != "2.0.0" {
		t.Fatalf("kiosk-7: %+v, %v", d, err)
	}
}
