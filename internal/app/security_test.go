package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/access"
	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/config"
	"github.com/ringmaster/ringmaster/internal/dbtest"
	"github.com/ringmaster/ringmaster/internal/ratelimit"
)

// TestForgedEventsMoveNoGate: events from devices without a credential,
// with a wrong or forged credential, or replayed by a real device, neither
// advance a gated rollout waiting for evidence nor pause one.
func TestForgedEventsMoveNoGate(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	gate := &client.Gate{BaselineFailure: 0.02}
	good := publishSmall(t, s, "agent", "2.0")
	waiting, err := s.admin.DeployPlan(ctx, "agent", "2.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1s", Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	bad := publishSmall(t, s, "os", "5.0")
	target, err := s.admin.DeployPlan(ctx, "os", "5.0", client.Plan{Waves: []client.Wave{{Percent: 50}, {Percent: 100}}, Bake: "1h", Gate: gate})
	if err != nil {
		t.Fatal(err)
	}
	successes := installEvents(good, 300, "forged-ok", 0) // would complete the waiting wave
	failures := installEvents(bad, 300, "forged-bad", 1)  // every install failing: would pause at once

	// 1. No credential: answered, never counted.
	for _, batch := range [][]client.DeviceEvent{successes, failures} {
		r, err := s.device.SendEvents(ctx, batch)
		if err != nil || r.Accepted != 0 || r.Unauthenticated != 300 {
			t.Fatalf("unauthenticated batch: %+v, %v", r, err)
		}
	}
	// 2. Wrong credentials: another device's, a made-up one, one minted
	// with a key that is not the server's.
	legit := s.devices(t)
	other := access.NewDeviceKey(randomKey()).Credential("dev-001", 0)
	for name, cred := range map[string]string{
		"another device's credential": legit.credential("dev-999"),
		"made up":                     "rmd_ZGV2LTAwMQ.00",
		"minted with another key":     other,
		"an admin token":              s.token,
	} {
		_, err := s.device.WithToken(cred).SendEvents(ctx, failures[:5])
		if !client.IsKind(err, "unauthorized") && !client.IsKind(err, "forbidden") {
			t.Errorf("%s: %v, want 401 or 403", name, err)
		}
	}
	// 3. A real device replays its own failure: under the same event id
	// and under new ones. It counts once.
	// A real device reports on its own offer: one of the first wave's.
	var one []client.DeviceEvent
	legitID := ""
	for i := 0; legitID == ""; i++ {
		id := fmt.Sprintf("dev-legit-%d", i)
		e := installEvents(bad, 1, "legit", 1)
		e[0].DeviceID = id
		if one, err = legit.cite(ctx, id, e); err != nil {
			t.Fatal(err)
		}
		if one[0].OfferReceipt != "" {
			legitID = id
		}
	}
	dev := legit.device(legitID)
	var limited int
	for i := range 100 {
		batch := one
		if i%2 == 1 {
			batch = []client.DeviceEvent{one[0]}
			batch[0].EventID = fmt.Sprintf("replay-%d", i)
		}
		if _, err := dev.SendEvents(ctx, batch); client.IsKind(err, "rate-limited") {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Error("100 batches in a burst from one device were never rate-limited")
	}
	waitFor(t, 30*time.Second, func() bool {
		h, err := s.admin.DeploymentHealth(ctx, target.ID)
		return err == nil && h.Health.Overall.Devices["install_failed"] == 1
	})
	// Several controller ticks later nothing has moved.
	time.Sleep(3500 * time.Millisecond)
	for _, id := range []string{waiting.ID, target.ID} {
		d, err := s.admin.Deployment(ctx, id)
		if err != nil || d.State != "running" || d.Wave != 0 {
			t.Fatalf("deployment %s moved: state %s wave %d (%v)", id, d.State, d.Wave, err)
		}
		evs, _ := s.admin.DeploymentEvents(ctx, id)
		for _, e := range evs {
			if e.Kind == "gate_paused" || (e.Kind == "wave_started" && e.Wave > 0) {
				t.Fatalf("deployment %s: %+v", id, e)
			}
		}
	}
	h, _ := s.admin.DeploymentHealth(ctx, waiting.ID)
	if n := h.Health.Overall.Devices["install_succeeded"]; n != 0 {
		t.Fatalf("forged successes counted: %d", n)
	}
	metrics := string(mustGet(t, s.url+"/metrics"))
	for _, want := range []string{`ringmaster_device_events_total{status="unauthenticated"} 600`, `ringmaster_device_requests_refused_total{reason="rate_limited"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func randomKey() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// TestDeviceAuthRequired: with device_auth required, only enrolled devices
// check in; a revoked device is refused and cannot enroll again; enrollment
// keys expire and can be revoked.
func TestDeviceAuthRequired(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) { c.DeviceAuth = "required" })
	ctx := context.Background()
	env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
	publishSmall(t, s, "agent", "2.0")
	if _, err := s.admin.Deploy(ctx, "agent", "2.0"); err != nil {
		t.Fatal(err)
	}
	req := client.CheckInRequest{DeviceID: "kiosk-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}}
	if _, err := s.device.CheckIn(ctx, req); !client.IsKind(err, "unauthorized") {
		t.Fatalf("check-in without a credential: %v", err)
	}
	key, err := run(t, env, "enrollment", "create", "--name", "kiosks")
	if err != nil {
		t.Fatal(err)
	}
	key = strings.TrimSpace(key)
	e, err := s.device.Enroll(ctx, key, "kiosk-1")
	if err != nil {
		t.Fatal(err)
	}
	kiosk := s.device.WithToken(e.Credential)
	if r, err := kiosk.CheckIn(ctx, req); err != nil || len(r.Offers) != 1 {
		t.Fatalf("enrolled check-in: %+v, %v", r, err)
	}
	if again, err := s.device.Enroll(ctx, key, "kiosk-1"); !client.IsKind(err, "conflict") || again.Credential != "" {
		t.Fatalf("enrolling again: %+v, %v (want 409 and no credential)", again, err)
	}
	impostor := req
	impostor.DeviceID = "kiosk-2"
	if _, err := kiosk.CheckIn(ctx, impostor); !client.IsKind(err, "forbidden") {
		t.Fatalf("check-in as another device: %v", err)
	}
	if out, err := run(t, env, "device", "revoke", "kiosk-1", "--reason", "stolen"); err != nil {
		t.Fatalf("device revoke: %v\n%s", err, out)
	}
	if _, err := kiosk.CheckIn(ctx, req); !client.IsKind(err, "unauthorized") || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked device checks in: %v", err)
	}
	if _, err := s.device.Enroll(ctx, key, "kiosk-1"); !client.IsKind(err, "forbidden") {
		t.Fatalf("revoked device enrolls: %v", err)
	}
	out, _ := run(t, env, "enrollment", "list")
	id := strings.Fields(strings.Split(out, "\n")[1])[0]
	if out, err := run(t, env, "enrollment", "revoke", id); err != nil {
		t.Fatalf("enrollment revoke: %v\n%s", err, out)
	}
	if _, err := s.device.Enroll(ctx, key, "kiosk-3"); !client.IsKind(err, "unauthorized") {
		t.Fatalf("revoked enrollment key: %v", err)
	}
	_, short, err := s.admin.CreateEnrollmentKey(ctx, "short", "1s")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.device.Enroll(ctx, short, "kiosk-4"); !client.IsKind(err, "unauthorized") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired enrollment key: %v", err)
	}
	if es, _ := s.admin.Audit(ctx, client.AuditFilter{Action: "device.revoke", Target: "kiosk-1"}); len(es) != 1 || es[0].Reason != "stolen" {
		t.Fatalf("device revocation audit: %+v", es)
	}
	// Its enrollment, the refused second one and the refused one after
	// the revocation are the key's.
	if es, _ := s.admin.Audit(ctx, client.AuditFilter{Action: "device.enroll*", Target: "kiosk-1"}); len(es) != 3 {
		t.Fatalf("enrollment audit of kiosk-1: %+v", es)
	}
}

// TestSourceRateLimit: one address cannot flood the device plane.
func TestSourceRateLimit(t *testing.T) {
	s := startServerWith(t, "", func(c *config.Config) { c.SourceRate = ratelimit.Limits{Rate: 1, Burst: 5} })
	var limited int
	for i := range 20 {
		resp, err := http.Post(s.url+"/v1/device/check", "application/json", strings.NewReader(fmt.Sprintf(`{"device_id":"d%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
			if resp.Header.Get("Retry-After") == "" || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("429 without Retry-After or problem body: %v", resp.Header)
			}
		}
	}
	if limited < 10 {
		t.Fatalf("%d of 20 requests limited with a burst of 5", limited)
	}
}

// lockedBuffer collects log output from concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSecretsNeverLogged runs the flows that handle every kind of secret
// with debug logging and looks for each secret in the logs.
func TestSecretsNeverLogged(t *testing.T) {
	logs := &lockedBuffer{}
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.JobPoll, cfg.LogLevel = t.TempDir(), "127.0.0.1:0", 50*time.Millisecond, "debug"
	cfg.TUF.Passphrase = "a passphrase that must stay secret"
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	url := "http://" + a.Addr()
	b, _ := os.ReadFile(filepath.Join(cfg.DataDir, app.AdminTokenFile))
	adminToken := strings.TrimSpace(string(b))
	admin, _ := client.New(url, adminToken)
	secrets := []string{adminToken, cfg.TUF.Passphrase}
	_, tok, err := admin.CreateToken(ctx, client.NewToken{Name: "ci", Role: "publisher"})
	if err != nil {
		t.Fatal(err)
	}
	_, enrollKey, _ := admin.CreateEnrollmentKey(ctx, "fleet", "")
	dev, _ := client.New(url, "")
	e, err := dev.Enroll(ctx, enrollKey, "d1")
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, tok, enrollKey, e.Credential)
	path, _ := writeRandomFile(t, 64)
	pub := admin.WithToken(tok)
	u, err := pub.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "1.0"}, []string{path}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev.WithToken(e.Credential).CheckIn(ctx, client.CheckInRequest{DeviceID: "d1"})
	dev.WithToken(e.Credential).SendEvents(ctx, installEvents(u, 1, "x", 0))
	admin.WithToken(tok + "0").Whoami(ctx) // a failed login logs nothing of the attempt's secret either
	secrets = append(secrets, tok+"0")
	admin.RotateOnlineKeys(ctx, "test")
	cancel()
	<-done
	out := logs.String()
	if len(out) < 1000 || !strings.Contains(out, "device enrolled") {
		t.Fatalf("expected debug logs of the flows, got %d bytes", len(out))
	}
	for _, s := range secrets {
		if strings.Contains(out, s) || strings.Contains(out, s[len(s)-20:]) {
			t.Errorf("a secret (…%s) appears in the logs", s[len(s)-6:])
		}
	}
	// Private keys on disk are encrypted: no file under keys/ holds the
	// raw seed's JSON field names of an unencrypted key.
	entries, _ := os.ReadDir(filepath.Join(cfg.DataDir, "keys"))
	if len(entries) < 4 {
		t.Fatalf("%d key files", len(entries))
	}
	for _, en := range entries {
		kb, _ := os.ReadFile(filepath.Join(cfg.DataDir, "keys", en.Name()))
		if !strings.Contains(string(kb), `"kdf"`) || !strings.Contains(string(kb), `"ciphertext"`) {
			t.Fatalf("key file %s is not encrypted: %s", en.Name(), kb)
		}
	}
}

// TestAuditVerifyDetectsTampering: the CLI's audit verify passes on an
// honest log and fails, naming the entry, after any row is edited or
// deleted directly in the database (both engines).
func TestAuditVerifyDetectsTampering(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			dsn := ""
			if b.Name == "postgres" {
				dsn = b.DSN(t)
			}
			s := startServer(t, dsn)
			ctx := context.Background()
			env := map[string]string{"RINGMASTER_URL": s.url, "RINGMASTER_TOKEN": s.token}
			publishSmall(t, s, "agent", "2.0")
			d, err := s.admin.Deploy(ctx, "agent", "2.0")
			if err != nil {
				t.Fatal(err)
			}
			s.admin.Command(ctx, d.ID, "pause", "checking")
			out, err := run(t, env, "audit", "verify")
			if err != nil || !strings.Contains(out, "intact:") {
				t.Fatalf("honest log: %v\n%s", err, out)
			}
			head := strings.Fields(out[strings.Index(out, "head ")+5:])[0]
			out, _ = run(t, env, "audit", "list", "--action", "deployment.*")
			if !strings.Contains(out, "deployment.paused") || !strings.Contains(out, "checking") || !strings.Contains(out, "deployment.created") {
				t.Fatalf("audit list:\n%s", out)
			}
			db := openDB(t, s.data, dsn)
			var n int
			db.QueryRow(`SELECT COUNT(*) FROM audit_log`).Scan(&n)
			if n < 5 {
				t.Fatalf("only %d audit entries", n)
			}
			exec := func(q string) {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			var reason string
			db.QueryRow(`SELECT reason FROM audit_log WHERE action = 'deployment.paused'`).Scan(&reason)
			exec(`UPDATE audit_log SET reason = 'nothing to see' WHERE action = 'deployment.paused'`)
			out, err = run(t, env, "audit", "verify")
			if err == nil || !strings.Contains(out, "TAMPERED: entry") || !strings.Contains(out, "was edited") {
				t.Fatalf("edited row not detected: %v\n%s", err, out)
			}
			exec(`UPDATE audit_log SET reason = '` + reason + `' WHERE action = 'deployment.paused'`)
			if out, err := run(t, env, "audit", "verify", "--anchor", head); err != nil {
				t.Fatalf("restored log with anchor: %v\n%s", err, out)
			}
			exec(`DELETE FROM audit_log WHERE seq = 2`)
			out, err = run(t, env, "audit", "verify")
			if err == nil || !strings.Contains(out, "missing (deleted)") {
				t.Fatalf("deleted row not detected: %v\n%s", err, out)
			}
		})
	}
}

// TestTLSListener: with tls_cert and tls_key the server speaks HTTPS only
// (TLS 1.2 or newer) and sends HSTS with its security headers.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	s := startServerWith(t, "", func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := strings.Replace(s.url, "http://", "https://", 1)
	resp, err := https.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, want := range map[string]string{"Strict-Transport-Security": "max-age=63072000; includeSubDomains",
		"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Get(url + "/healthz"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if resp, err := http.Get(s.url + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plain HTTP was served on the TLS listener")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}
