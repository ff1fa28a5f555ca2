package agents

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

// menderKey is a device key of the test's own, signing as the Mender
// client does (RSA, PKCS #1 v1.5 over SHA-256).
type menderKey struct{ key *rsa.PrivateKey }

func newMenderKey(t *testing.T) menderKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return menderKey{k}
}

// authRequest posts a signed auth request and returns the status and body.
func (k menderKey) authRequest(t *testing.T, url string, identity map[string]string, tenantToken string, tamper bool) (int, string) {
	t.Helper()
	der, _ := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	idData, _ := json.Marshal(identity)
	body, _ := json.Marshal(map[string]string{"id_data": string(idData), "pubkey": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "tenant_token": tenantToken})
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, k.key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if tamper {
		body = bytes.Replace(body, []byte(`"tenant_token":"`), []byte(`"tenant_token":"x`), 1)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/devices/v1/authentication/auth_requests", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-MEN-Signature", base64.StdEncoding.EncodeToString(sig))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestMenderAuthProtocol: a signed auth request with an enrollment key as
// tenant token is accepted at once; one without waits until an admin
// accepts it; the token is the device's credential; a tampered request,
// another key for an accepted device and oversized bodies are refused; a
// reset makes the device pending again.
func TestMenderAuthProtocol(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", nil)
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "kiosks", "1h")
	if err != nil {
		t.Fatal(err)
	}
	k := newMenderKey(t)
	if code, body := k.authRequest(t, s.URL, map[string]string{"device_id": "kiosk-1"}, key, false); code != 200 || !strings.HasPrefix(body, "rmd_") {
		t.Fatalf("with an enrollment key: %d %s", code, body)
	}
	code, token := k.authRequest(t, s.URL, map[string]string{"device_id": "kiosk-1"}, key, false)
	if code != 200 {
		t.Fatalf("again: %d %s", code, token)
	}
	check := func(token, device string) int {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/device/check", strings.NewReader(`{"device_id": "`+device+`"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := check(token, "kiosk-1"); c != 200 {
		t.Fatalf("the token as a credential: %d", c)
	}
	// Its inventory is its attributes: PUT replaces, PATCH adds; what
	// could not be an attribute is left out.
	inventory := func(method, token, body string) int {
		req, _ := http.NewRequest(method, s.URL+"/api/devices/v1/inventory/device/attributes", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := inventory("PUT", token, `[{"name": "device_type", "value": "kiosk-v1"}, {"name": "ipv4_eth0", "value": ["10.0.0.7/24", "10.0.0.8/24"]},
		{"name": "bad name!", "value": "x"}, {"name": "cpu_count", "value": 4}]`); c != 200 {
		t.Fatalf("inventory: %d", c)
	}
	// PATCH adds to what the registry holds (written within registry_flush).
	apptest.WaitFor(t, 10*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, "kiosk-1")
		return err == nil && d.Attributes["device_type"] == "kiosk-v1"
	})
	if c := inventory("PATCH", token, `[{"name": "site", "value": "berlin"}]`); c != 200 {
		t.Fatalf("inventory patch: %d", c)
	}
	for _, bad := range []struct {
		token, body string
		want        int
	}{{"", `[]`, 401}, {token, `{"name": "x"}`, 400}, {token, `[{"name": "x", "value": {"nested": 1}}]`, 400}} {
		if c := inventory("PUT", bad.token, bad.body); c != bad.want {
			t.Fatalf("inventory %q: %d, want %d", bad.body, c, bad.want)
		}
	}
	apptest.WaitFor(t, 10*time.Second, func() bool {
		d, err := s.Admin.Device(ctx, "kiosk-1")
		return err == nil && d.Attributes["device_type"] == "kiosk-v1" && d.Attributes["ipv4_eth0"] == "10.0.0.7/24,10.0.0.8/24" &&
			d.Attributes["cpu_count"] == "4" && d.Attributes["site"] == "berlin" && d.Attributes["bad name!"] == ""
	})
	if code, body := k.authRequest(t, s.URL, map[string]string{"device_id": "kiosk-1"}, key, true); code != 401 || !strings.Contains(body, "does not verify") {
		t.Fatalf("tampered: %d %s", code, body)
	}
	// Without a tenant token: pending until accepted.
	k2 := newMenderKey(t)
	identity := map[string]string{"mac": "52:54:00:12:34:56", "serial": "SN-77"}
	if code, body := k2.authRequest(t, s.URL, identity, "", false); code != 401 || !strings.Contains(body, "awaits acceptance") {
		t.Fatalf("pending: %d %s", code, body)
	}
	pending, err := s.Admin.MenderDevices(ctx, "pending")
	if err != nil || len(pending) != 1 || pending[0].Identity["serial"] != "SN-77" || !strings.HasPrefix(pending[0].DeviceID, "mender-") {
		t.Fatalf("pending: %+v, %v", pending, err)
	}
	id := pending[0].DeviceID
	if _, err := s.Admin.AcceptDevice(ctx, id, "field engineer vouches for SN-77"); err != nil {
		t.Fatal(err)
	}
	code, token2 := k2.authRequest(t, s.URL, identity, "", false)
	if code != 200 || check(token2, id) != 200 {
		t.Fatalf("accepted: %d %s", code, token2)
	}
	// Another key for the accepted identity is refused; after a reset
	// the device starts over, pending.
	if code, body := newMenderKey(t).authRequest(t, s.URL, identity, "", false); code != 409 || !strings.Contains(body, "another key") {
		t.Fatalf("another key: %d %s", code, body)
	}
	if _, err := s.Admin.ResetDevice(ctx, id, "reflashed"); err != nil {
		t.Fatal(err)
	}
	if code, _ := k2.authRequest(t, s.URL, identity, "", false); code != 401 {
		t.Fatalf("after a reset: %d", code)
	}
	apptest.WaitFor(t, 10*time.Second, func() bool { return check(token2, id) == 401 })
	res, err := http.Post(s.URL+"/api/devices/v1/authentication/auth_requests", "application/json", strings.NewReader(strings.Repeat(" ", 20<<10)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 413 {
		t.Fatalf("oversized: %d", res.StatusCode)
	}
}

// identityScript is where the Mender client runs its identity script
// (fixed at build time); the test installs one that prints the device id
// the test gives it, when the path is free or already the test's.
const identityScript = "/usr/share/mender/identity/mender-device-identity"

const identityScriptBody = "#!/bin/sh\n# ringmaster test identity\necho \"device_id=${RINGMASTER_MENDER_DEVICE_ID:-mender-test}\"\necho \"mac=52:54:00:00:00:01\"\n"

func installIdentityScript(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile(identityScript); err == nil && !bytes.Contains(b, []byte("ringmaster test identity")) {
		t.Skipf("SKIPPED: %s belongs to this machine's Mender setup; not replacing it", identityScript)
	}
	if _, err := os.Stat(identityScript); os.IsNotExist(err) {
		t.Cleanup(func() { os.Remove(identityScript) })
	}
	if err := os.MkdirAll(filepath.Dir(identityScript), 0o755); err != nil {
		t.Skipf("SKIPPED: cannot install the test identity script: %v", err)
	}
	if err := os.WriteFile(identityScript, []byte(identityScriptBody), 0o755); err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_AGENTS") == "1" {
			t.Fatalf("cannot install the test identity script (run as root): %v", err)
		}
		t.Skipf("SKIPPED: cannot install the test identity script (run as root): %v", err)
	}
}

// artifactInfo is where the Mender client reads the name of the artifact
// it runs until it installs one (fixed at build time); the test installs
// one when the path is free or already the test's.
const artifactInfo = "/etc/mender/artifact_info"

func installArtifactInfo(t *testing.T, name string) {
	t.Helper()
	if b, err := os.ReadFile(artifactInfo); err == nil && !bytes.Contains(b, []byte("# ringmaster test")) {
		t.Skipf("SKIPPED: %s belongs to this machine's Mender setup; not replacing it", artifactInfo)
	} else if os.IsNotExist(err) {
		t.Cleanup(func() { os.Remove(artifactInfo) })
	}
	err := os.MkdirAll(filepath.Dir(artifactInfo), 0o755)
	if err == nil {
		err = os.WriteFile(artifactInfo, []byte("# ringmaster test\nartifact_name="+name+"\n"), 0o644)
	}
	if err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_AGENTS") == "1" {
			t.Fatalf("cannot install %s (run as root): %v", artifactInfo, err)
		}
		t.Skipf("SKIPPED: cannot install %s (run as root): %v", artifactInfo, err)
	}
}

// menderBootstrap runs `mender bootstrap` (the client authenticates and
// exits) as device id against url, with tenantToken as TenantToken; dir
// is its configuration and data directory (its key is kept there).
func menderBootstrap(t *testing.T, bin, dir, url, id, tenantToken string) (string, error) {
	t.Helper()
	menderConfig(t, dir, url, tenantToken)
	return menderRun(t, bin, dir, id, "bootstrap")
}

// menderConfig writes a Mender client configuration to dir: the server,
// the tenant token, a device type of kiosk-v1, and polls every 2 seconds.
func menderConfig(t *testing.T, dir, url, tenantToken string) {
	t.Helper()
	conf := map[string]any{"ServerURL": url, "TenantToken": tenantToken, "DeviceTypeFile": filepath.Join(dir, "device_type"),
		"UpdatePollIntervalSeconds": 2, "InventoryPollIntervalSeconds": 5, "RetryPollIntervalSeconds": 1, "RetryPollCount": 1, "DBus": map[string]bool{"Enabled": false}}
	b, _ := json.Marshal(conf)
	write(t, filepath.Join(dir, "mender.conf"), b)
	write(t, filepath.Join(dir, "device_type"), []byte("device_type=kiosk-v1\n"))
}

// menderRun runs a mender command with the configuration and data in dir.
func menderRun(t *testing.T, bin, dir, id, command string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config", filepath.Join(dir, "mender.conf"), "--fallback-config", filepath.Join(dir, "none.conf"),
		"--data", dir, "--no-syslog", "--log-level", "info", command)
	cmd.Env = append(os.Environ(), "RINGMASTER_MENDER_DEVICE_ID="+id)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startMenderDaemon runs `mender daemon` as device id with the
// configuration and data in dir until the test ends; its log is the
// test's when it fails.
func startMenderDaemon(t *testing.T, bin, dir, id string) (log *lockedBuffer, stop func()) {
	t.Helper()
	daemon := exec.Command(bin, "--config", filepath.Join(dir, "mender.conf"), "--fallback-config", filepath.Join(dir, "none.conf"),
		"--data", dir, "--no-syslog", "--log-level", "info", "daemon")
	daemon.Env = append(os.Environ(), "RINGMASTER_MENDER_DEVICE_ID="+id)
	log = new(lockedBuffer)
	daemon.Stdout, daemon.Stderr = log, log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = daemon.Process.Kill()
			_ = daemon.Wait()
			if t.Failed() {
				t.Logf("mender daemon %s:\n%s", id, log.String())
			}
		})
	}
	t.Cleanup(stop)
	return log, stop
}

// TestMenderClientAuth: the Mender client (Debian's mender-client 3.x)
// authenticates with an enrollment key as its tenant token; without one it
// waits until an admin accepts it, then authenticates.
func TestMenderClientAuth(t *testing.T) {
	ctx := context.Background()
	bin := need(t, "mender", "mender-client")
	installIdentityScript(t)
	installArtifactInfo(t, "kiosk-1.0.0")
	s := apptest.Start(t, "", nil)
	_, key, err := s.Admin.CreateEnrollmentKey(ctx, "kiosks", "1h")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := menderBootstrap(t, bin, t.TempDir(), s.URL, "kiosk-7", key); err != nil {
		t.Fatalf("bootstrap with an enrollment key: %v\n%s", err, out)
	}
	ds, err := s.Admin.MenderDevices(ctx, "accepted")
	if err != nil || len(ds) != 1 || ds[0].DeviceID != "kiosk-7" || !strings.HasPrefix(ds[0].DecidedBy, "enrollment_key:") {
		t.Fatalf("accepted: %+v, %v", ds, err)
	}
	dir := t.TempDir()
	out, err := menderBootstrap(t, bin, dir, s.URL, "kiosk-8", "")
	if err == nil {
		t.Fatalf("bootstrap without a key or acceptance succeeded:\n%s", out)
	}
	pending, err := s.Admin.MenderDevices(ctx, "pending")
	if err != nil || len(pending) != 1 || pending[0].DeviceID != "kiosk-8" || pending[0].Identity["mac"] != "52:54:00:00:00:01" {
		t.Fatalf("pending: %+v, %v\n%s", pending, err, out)
	}
	if _, err := s.Admin.AcceptDevice(ctx, "kiosk-8", "installed by a field engineer"); err != nil {
		t.Fatal(err)
	}
	// The same device (its data directory keeps its key), accepted.
	if out, err := menderBootstrap(t, bin, dir, s.URL, "kiosk-8", ""); err != nil {
		t.Fatalf("bootstrap once accepted: %v\n%s", err, out)
	}
	// Its daemon sends its inventory, which becomes its attributes.
	startMenderDaemon(t, bin, dir, "kiosk-8")
	var d client.Device
	apptest.WaitFor(t, 20*time.Second, func() bool {
		d, err = s.Admin.Device(ctx, "kiosk-8")
		return err == nil && d.Attributes["device_type"] == "kiosk-v1" && d.Attributes["artifact_name"] == "kiosk-1.0.0"
	})
	t.Logf("kiosk-8's inventory: %v", d.Attributes)
}
