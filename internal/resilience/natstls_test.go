package resilience

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// TestNATSOverTLS: the event log reaches an external nats-server that
// only speaks TLS, trusting the CA named by events_tls_ca; events are
// accepted and counted through it. Without the CA the server refuses to
// start, saying why, rather than sending events in the clear or to an
// unverified peer.
func TestNATSOverTLS(t *testing.T) {
	bin := natsServer(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTLSFiles(t, dir)
	port := freePort(t)
	cmd := exec.Command(bin, "-js", "-sd", filepath.Join(dir, "js"), "-a", "127.0.0.1", "-p", fmt.Sprint(port),
		"--tls", "--tlscert", certFile, "--tlskey", keyFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	apptest.WaitFor(t, 30*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)

	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.EventsURL = t.TempDir(), "127.0.0.1:0", url
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if a, err := app.New(ctx, cfg, discardLog()); err == nil {
		a.Run(ctx) // closes it
		t.Fatal("started against a TLS NATS server whose certificate it cannot verify")
	} else if t.Logf("without events_tls_ca: %v", err); !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("refusal without the CA does not say why: %v", err)
	}

	s := apptest.Start(t, "", func(c *config.Config) { c.EventsURL, c.EventsTLSCA = url, caFile })
	apptest.Publish(t, s.Admin, "agent", "2.0", "agent 2.0")
	dep, err := s.Admin.Deploy(ctx, "agent", "2.0")
	if err != nil {
		t.Fatal(err)
	}
	device, _ := client.New(s.URL, s.DeviceCredential("dev-1"))
	r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}})
	if err != nil || len(r.Offers) != 1 {
		t.Fatalf("check-in: %+v, %v", r, err)
	}
	if res, err := device.SendEvents(ctx, []client.DeviceEvent{r.Offers[0].Event("dev-1-installed", "dev-1", "install_succeeded", time.Now().UTC())}); err != nil || res.Accepted != 1 {
		t.Fatalf("an event through TLS NATS: %+v, %v", res, err)
	}
	apptest.WaitFor(t, time.Minute, func() bool {
		h, err := s.Admin.DeploymentHealth(ctx, dep.ID)
		return err == nil && h.Health.Overall.Devices["install_succeeded"] == 1
	})
}

// writeTLSFiles makes a CA and a certificate for 127.0.0.1 signed by it.
func writeTLSFiles(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ringmaster test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for path, block := range map[string]*pem.Block{ca: {Type: "CERTIFICATE", Bytes: caDER},
		cert: {Type: "CERTIFICATE", Bytes: srvDER}, key: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, cert, key
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
