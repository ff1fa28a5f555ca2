package agents

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flatcar/go-omaha/omaha"
	omahaclient "github.com/flatcar/go-omaha/omaha/client"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// The app id of a product published as its GUID (Omaha clients send it in
// braces and upper case).
const (
	appID     = "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}"
	product   = "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
	machineID = "{8BDE4C4D-9083-4D61-B41C-3253212C0C37}"
	deviceID  = "8bde4c4d-9083-4d61-b41c-3253212c0c37"
)

// TestOmahaClient: go-omaha's client (the Omaha client of Flatcar's
// update tooling) gets noupdate, then, once the release is deployed, an
// update whose package has the size, SHA-1 and SHA-256 of the bytes its
// URL serves; a pause and a safeguard hold stop the offer as they do for
// native devices; the device is in the registry with its channel, and
// explain explains it.
func TestOmahaClient(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0 })
	payload := bytes.Repeat([]byte("flatcar update payload "), 4096)
	file := filepath.Join(t.TempDir(), "update.gz")
	if err := os.WriteFile(file, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: product, Version: "2.0.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	oc, err := omahaclient.NewAppClient(s.URL+"/v1/update/", machineID, appID, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	oc.SetClientVersion("ringmaster-test-0.1")
	if err := oc.SetTrack("stable"); err != nil {
		t.Fatal(err)
	}
	noUpdate := func(when string) {
		t.Helper()
		if _, err := oc.UpdateCheck(); !errors.Is(err, omaha.NoUpdate) {
			t.Fatalf("%s: update check = %v, want noupdate", when, err)
		}
	}
	noUpdate("before any deployment")

	dep, err := s.Admin.Deploy(ctx, product, "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := oc.UpdateCheck()
	if err != nil {
		t.Fatalf("update check once deployed: %v", err)
	}
	if len(up.URLs) != 1 || len(up.Manifests) != 1 || len(up.Manifests[0].Packages) != 1 || up.Manifests[0].Version != "2.0.0" {
		t.Fatalf("update: %+v", up)
	}
	pkg := up.Manifests[0].Packages[0]
	res, err := http.Get(up.URLs[0].CodeBase + pkg.Name)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	sum1, sum256 := sha1.Sum(got), sha256.Sum256(got)
	if !bytes.Equal(got, payload) || pkg.Size != uint64(len(payload)) ||
		pkg.SHA1 != base64.StdEncoding.EncodeToString(sum1[:]) || pkg.SHA256 != base64.StdEncoding.EncodeToString(sum256[:]) {
		t.Fatalf("package %+v does not describe the %d bytes its URL serves", pkg, len(got))
	}
	if acts := up.Manifests[0].Actions; len(acts) != 1 || acts[0].Event != "postinstall" || acts[0].SHA256 != pkg.SHA256 {
		t.Fatalf("actions: %+v", acts)
	}
	if err := oc.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}

	// A paused rollout and a safeguard hold stop the offer here too.
	if _, err := s.Admin.Command(ctx, dep.ID, "pause", "looking into a report"); err != nil {
		t.Fatal(err)
	}
	noUpdate("paused")
	if _, err := s.Admin.Command(ctx, dep.ID, "resume", "fine after all"); err != nil {
		t.Fatal(err)
	}
	if _, err := oc.UpdateCheck(); err != nil {
		t.Fatalf("resumed: %v", err)
	}
	hold, err := s.Admin.CreateHold(ctx, product, "", `device.attributes["channel"] == "stable"`, "stable channel waits")
	if err != nil {
		t.Fatal(err)
	}
	noUpdate("held")
	if _, err := s.Admin.ReleaseHold(ctx, hold.ID, "done waiting"); err != nil {
		t.Fatal(err)
	}

	// The device is in the registry as the machine id names it, and
	// explain explains it from there.
	var d client.Device
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err = s.Admin.Device(ctx, deviceID)
		return err == nil && d.Installed[product] == "1.0.0"
	})
	if d.Attributes["channel"] != "stable" {
		t.Fatalf("registered device: %+v", d)
	}
	ex, err := s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: deviceID})
	if err != nil || ex.Device.Source != "registry" || len(ex.Decisions) != 1 || !ex.Decisions[0].Offered {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
}

// TestOmahaBadInput: malformed, oversized and wrong-protocol bodies get a
// 4xx problem and register nothing.
func TestOmahaBadInput(t *testing.T) {
	s := apptest.Start(t, "", nil)
	for _, c := range []struct {
		name, body string
		want       int
	}{
		{"not XML", "{\"device_id\": \"x\"}", http.StatusBadRequest},
		{"truncated", `<?xml version="1.0"?><request protocol="3.0"><app appid="x" version="1.0.0" machineid="m1">`, http.StatusBadRequest},
		{"protocol 2", `<request protocol="2.0"><app appid="x" version="1.0.0" machineid="m1"><updatecheck/></app></request>`, http.StatusBadRequest},
		{"no app", `<request protocol="3.0"></request>`, http.StatusBadRequest},
		{"bad version", `<request protocol="3.0"><app appid="x" version="not a version" machineid="m1"><updatecheck/></app></request>`, http.StatusBadRequest},
		{"bad machine id", `<request protocol="3.0"><app appid="x" version="1.0.0" machineid="../etc"><updatecheck/></app></request>`, http.StatusBadRequest},
		{"oversized", `<request protocol="3.0">` + strings.Repeat(`<app appid="x" version="1.0.0" machineid="m1"/>`, 2000) + `</request>`, http.StatusRequestEntityTooLarge},
	} {
		res, err := http.Post(s.URL+"/v1/update/", "text/xml", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want || res.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s", c.name, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}
	// A good request after them: once its device is registered, anything
	// the bad ones registered would be too.
	res, err := http.Post(s.URL+"/v1/update/", "text/xml", strings.NewReader(
		`<request protocol="3.0"><app appid="x" version="1.0.0" machineid="good-one"><ping/></app></request>`))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("good request: %v %v", res.Status, err)
	}
	res.Body.Close()
	var page client.DevicePage
	apptest.WaitFor(t, 30*time.Second, func() bool {
		page, err = s.Admin.Devices(context.Background(), client.DeviceFilter{})
		return err == nil && len(page.Devices) > 0
	})
	if len(page.Devices) != 1 || page.Devices[0].ID != "good-one" {
		t.Fatalf("registered devices: %+v", page.Devices)
	}
}

// TestOmahaEvents: at /v1/update/{key}/ the enrollment key in the path
// enrolls the device on its first request and go-omaha's events count:
// download events, a completed update from the device now running the
// release, and a failed one with its error code. The same events without
// the key, or from a device never offered the update, do not count.
func TestOmahaEvents(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0; c.DeviceAuth = "required" })
	file := filepath.Join(t.TempDir(), "update.gz")
	if err := os.WriteFile(file, bytes.Repeat([]byte("flatcar "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: product, Version: "2.0.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "flatcar fleet", "1h")
	if err != nil {
		t.Fatal(err)
	}
	dep, err := s.Admin.Deploy(ctx, product, "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	app := func(endpoint, machine, version string) *omahaclient.AppClient {
		t.Helper()
		oc, err := omahaclient.NewAppClient(endpoint, machine, appID, version)
		if err != nil {
			t.Fatal(err)
		}
		return oc
	}
	event := func(oc *omahaclient.AppClient, e omaha.EventRequest) {
		t.Helper()
		if err := <-oc.Event(&e); err != nil {
			t.Fatalf("event %+v: %v", e, err)
		}
	}
	keyed := s.URL + "/v1/update/" + key + "/"
	good, bad := app(keyed, "{0A0A0A0A-0000-4000-8000-000000000001}", "1.0.0"), app(keyed, "{0A0A0A0A-0000-4000-8000-000000000002}", "1.0.0")
	for _, oc := range []*omahaclient.AppClient{good, bad} {
		if _, err := oc.UpdateCheck(); err != nil {
			t.Fatalf("update check: %v", err)
		}
	}
	// Events cite the server's offer record, written in batches.
	apptest.WaitFor(t, 30*time.Second, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Offered == 2
	})
	event(good, omaha.EventRequest{Type: omaha.EventTypeUpdateDownloadStarted, Result: omaha.EventResultSuccess})
	event(good, omaha.EventRequest{Type: omaha.EventTypeUpdateDownloadFinished, Result: omaha.EventResultSuccess})
	// After the reboot the app runs the release and says so.
	if err := good.SetVersion("2.0.0"); err != nil {
		t.Fatal(err)
	}
	event(good, omaha.EventRequest{Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultSuccessReboot, PreviousVersion: "1.0.0"})
	event(bad, omaha.EventRequest{Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultError, ErrorCode: 2000})
	// Not counted: without the key (refused: device_auth is required),
	// and from a device never offered the update.
	anon := app(s.URL+"/v1/update/", "{0A0A0A0A-0000-4000-8000-000000000003}", "1.0.0")
	if err := <-anon.Event(&omaha.EventRequest{Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultError}); err == nil {
		t.Fatal("an event without the key was accepted with device_auth required")
	}
	stranger := app(keyed, "{0A0A0A0A-0000-4000-8000-000000000004}", "1.0.0")
	event(stranger, omaha.EventRequest{Type: omaha.EventTypeUpdateComplete, Result: omaha.EventResultError, ErrorCode: 1})

	var h client.Health
	apptest.WaitFor(t, 30*time.Second, func() bool {
		h, err = s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == 1 && h.Health.Overall.Devices["install_failed"] == 1
	})
	time.Sleep(500 * time.Millisecond) // anything else would be counted by now
	if h, _ = s.Admin.DeploymentHealth(ctx, dep.ID); h.Health.Overall.Devices["install_failed"] != 1 {
		t.Fatalf("health: %+v", h.Health.Overall)
	}
}

// TestOmahaAppID: a product that declares an Omaha app id is the product
// of Omaha apps with that id, in any case and with or without braces; two
// products cannot share one.
func TestOmahaAppID(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0 })
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "flatcar", OmahaAppID: appID}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "other", OmahaAppID: strings.ToLower(appID)}); err == nil || !strings.Contains(err.Error(), "already has Omaha app id") {
		t.Fatalf("a second product with the app id: %v", err)
	}
	file := filepath.Join(t.TempDir(), "update.gz")
	if err := os.WriteFile(file, []byte("flatcar 3.0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "flatcar", Version: "3.0.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Deploy(ctx, "flatcar", "3.0.0"); err != nil {
		t.Fatal(err)
	}
	oc, err := omahaclient.NewAppClient(s.URL+"/v1/update/", machineID, appID, "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := oc.UpdateCheck()
	if err != nil || len(up.Manifests) != 1 || up.Manifests[0].Version != "3.0.0" {
		t.Fatalf("update check by app id: %+v, %v", up, err)
	}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, deviceID)
		return err == nil && d.Installed["flatcar"] == "2.0.0"
	})
}
