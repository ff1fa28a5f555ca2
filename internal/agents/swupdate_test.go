package agents

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// need finds a program the test runs, or skips loudly; with
// RINGMASTER_REQUIRE_AGENTS=1 (as .ci/run sets) a missing one fails.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_AGENTS") == "1" {
			t.Fatalf("%s is required (RINGMASTER_REQUIRE_AGENTS=1): apt-get install %s", name, pkg)
		}
		t.Skipf("SKIPPED: %s not found; apt-get install %s (.ci/run does) to run this test", name, pkg)
	}
	return p
}

// signer is a code-signing certificate of the test's own, as SWUpdate's
// CMS verification wants it.
type signer struct{ cert, key string }

func newSigner(t *testing.T, dir string) signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringmaster test signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := signer{cert: filepath.Join(dir, "signer.pem"), key: filepath.Join(dir, "signer.key")}
	write(t, s.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, s.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	return s
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// swu builds a signed .swu: sw-description installing image to target
// with rawfile on boards of revision 1.0, its CMS signature (made by
// openssl), and the image, in a newc cpio archive.
func swu(t *testing.T, dir string, s signer, version, target string, image []byte) string {
	t.Helper()
	sum := sha256.Sum256(image)
	desc := fmt.Sprintf(`software =
{
	version = "%s";
	hardware-compatibility: [ "1.0" ];
	files: (
		{
			filename = "image.bin";
			path = "%s";
			sha256 = "%s";
		}
	);
}
`, version, target, hex.EncodeToString(sum[:]))
	descFile := filepath.Join(dir, "sw-description")
	write(t, descFile, []byte(desc))
	sig := descFile + ".sig"
	if out, err := exec.Command(need(t, "openssl", "openssl"), "cms", "-sign", "-in", descFile, "-out", sig, "-signer", s.cert,
		"-inkey", s.key, "-outform", "DER", "-nosmimecap", "-binary").CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -sign: %v\n%s", err, out)
	}
	sigBytes, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, f := range []struct {
		name string
		body []byte
	}{{"sw-description", []byte(desc)}, {"sw-description.sig", sigBytes}, {"image.bin", image}} {
		if err := w.WriteHeader(&cpio.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "update-"+version+".swu")
	write(t, out, buf.Bytes())
	return out
}

// suricatta runs SWUpdate's hawkBit client for one device until stop.
type suricatta struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSuricatta starts `swupdate -u` for device id against server, with
// the public certificate, board revision, identify attributes (sent as
// configData) and the token flag ("-k TargetToken" or "-g GatewayToken").
// extra suricatta arguments follow (-c 2 confirms an installed update).
func startSuricatta(t *testing.T, server, id string, s signer, board string, identify map[string]string, token []string, extra ...string) *suricatta {
	t.Helper()
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var ident []string
	for k, v := range identify {
		ident = append(ident, fmt.Sprintf(`{ name = "%s"; value = "%s"; }`, k, v))
	}
	cfg := filepath.Join(dir, "swupdate.cfg")
	write(t, cfg, []byte("globals : {\n\tverbose = true;\n};\nidentify : (\n"+strings.Join(ident, ",\n")+"\n);\n"))
	args := append([]string{"-t", "default", "-u", u.Scheme + "://" + u.Host, "-i", id, "-p", "1", "-r", "3", "-w", "1"}, token...)
	args = append(args, extra...)
	cmd := exec.Command(need(t, "swupdate", "swupdate"), "-f", cfg, "-v", "-k", s.cert, "-H", board, "-u", strings.Join(args, " "))
	su := &suricatta{cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = su.log, su.log
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(su.done) }()
	t.Cleanup(func() { su.stop(t) })
	return su
}

func (s *suricatta) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if t.Failed() {
		t.Logf("swupdate log:\n%s", s.log.String())
	}
}

// waitLog waits for swupdate to log want.
func (s *suricatta) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(s.log.String(), want) {
		select {
		case <-s.done:
			t.Fatalf("swupdate exited before it logged %q; log:\n%s", want, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swupdate never logged %q; log:\n%s", want, s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSWUpdate: SWUpdate's suricatta, polling through hawkBit DDI,
// installs a signed .swu published and deployed through Ringmaster to a
// file and reports success (a device enrolled by a gateway token, after
// the reboot that confirms the update); a device of a board revision the
// update does not support reports failure (one with its own credential).
// Both count in the deployment's health, and the gate pauses the rollout
// on the failures.
func TestSWUpdate(t *testing.T) {
	ctx := context.Background()
	need(t, "swupdate", "swupdate")
	s := apptest.Start(t, "", func(c *config.Config) { c.DeviceRate.Rate = 0; c.NextCheck = time.Second })
	dir := t.TempDir()
	sig := newSigner(t, dir)
	image := bytes.Repeat([]byte("gateway firmware 2.0 "), 50000)
	target := filepath.Join(dir, "installed.bin")
	file := swu(t, dir, sig, "2.0.0", target, image)
	// The product's DDI devices install .swu images: publish checks them.
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "gateway", Formats: map[string]string{"ddi": "swu"}}); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "notes.txt")
	write(t, notes, []byte("release notes"))
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "gateway", Version: "1.9.0"}, []string{notes}, client.PublishOptions{Poll: 50 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "every update needs a payload named *.swu") {
		t.Fatalf("an update without a .swu: %v", err)
	}
	broken := filepath.Join(dir, "broken.swu")
	write(t, broken, image) // no cpio, no sw-description
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "gateway", Version: "1.9.1"}, []string{broken}, client.PublishOptions{Poll: 50 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "not a SWUpdate image") {
		t.Fatalf("a .swu that is not one: %v", err)
	}
	// Only the .swu is offered to SWUpdate; the notes ride along for others.
	u, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "gateway", Version: "2.0.0"}, []string{file, notes}, client.PublishOptions{Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if f := u.Payloads[0].Format; f == nil || f.Format != "swu" || !f.Signed || u.Payloads[1].Format != nil {
		t.Fatalf("payloads as read at publish: %+v, %+v", u.Payloads[0].Format, u.Payloads[1].Format)
	}
	_, gatewayToken, err := s.Admin.CreateEnrollmentKey(ctx, "gateways", "1h")
	if err != nil {
		t.Fatal(err)
	}
	dep, err := s.Admin.DeployPlan(ctx, "gateway", "2.0.0", client.Plan{Waves: []client.Wave{{Percent: 100}}, Bake: "1h",
		Gate: &client.Gate{BaselineFailure: 0.02, Alpha: 0.05}})
	if err != nil {
		t.Fatal(err)
	}
	identify := map[string]string{"product": "gateway", "version": "1.0.0", "board": "gw"}

	good := startSuricatta(t, s.URL, "gw-good", sig, "gw:1.0", identify, []string{"-g", gatewayToken})
	good.waitLog(t, "Update successful, executing post-update actions")
	good.stop(t)
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(got, image) {
		t.Fatalf("installed file: %d bytes, %v; want the %d bytes of the image", len(got), err, len(image))
	}
	// After the reboot, SWUpdate confirms the update (-c 2).
	confirm := startSuricatta(t, s.URL, "gw-good", sig, "gw:1.0", identify, []string{"-g", gatewayToken}, "-c", "2")
	health := func(want map[string]int64) {
		t.Helper()
		var h client.Health
		apptest.WaitFor(t, time.Minute, func() bool {
			h, err = s.Admin.DeploymentHealth(ctx, dep.ID)
			for k, n := range want {
				if err != nil || h.Health.Overall.Devices[k] != n {
					return false
				}
			}
			return true
		})
	}
	health(map[string]int64{"install_succeeded": 1})
	apptest.WaitFor(t, time.Minute, func() bool {
		d, err := s.Admin.Device(ctx, "gw-good")
		return err == nil && d.Installed["gateway"] == "2.0.0" && d.Attributes["board"] == "gw"
	})
	confirm.waitLog(t, "No pending action on server")
	confirm.stop(t)

	// Boards of revision 2.0 are not in the update's hardware
	// compatibility: each downloads it, refuses it and reports failure,
	// with a credential of its own.
	for i := range 3 {
		id := fmt.Sprintf("gw-bad-%d", i)
		e, err := s.Admin.Enroll(ctx, gatewayToken, id)
		if err != nil {
			t.Fatal(err)
		}
		bad := startSuricatta(t, s.URL, id, sig, "gw:2.0", identify, []string{"-k", e.Credential})
		health(map[string]int64{"install_failed": int64(i + 1)})
		bad.stop(t)
		if !strings.Contains(bad.log.String(), "SW not compatible with hardware") {
			t.Fatalf("%s failed for another reason:\n%s", id, bad.log.String())
		}
	}
	health(map[string]int64{"install_succeeded": 1, "install_failed": 3})
	apptest.WaitFor(t, time.Minute, func() bool {
		d, err := s.Admin.Deployment(ctx, dep.ID)
		return err == nil && d.State == "paused" && d.By == "health-gate"
	})
	// Paused, the release is offered to no other controller.
	late := startSuricatta(t, s.URL, "gw-late", sig, "gw:1.0", identify, []string{"-g", gatewayToken})
	late.waitLog(t, "No pending action on server")
	time.Sleep(2 * time.Second) // two more polls
	late.stop(t)
	if strings.Contains(late.log.String(), "Update action available") {
		t.Fatalf("a paused deployment was offered:\n%s", late.log.String())
	}
	ex, err := s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: "gw-late"})
	if err != nil || ex.Device.Source != "registry" || len(ex.Decisions) != 1 || ex.Decisions[0].Offered || ex.Decisions[0].FailedStep != "deployment" {
		t.Fatalf("explain: %+v, %v", ex, err)
	}
}
