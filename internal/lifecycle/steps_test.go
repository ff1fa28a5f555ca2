package lifecycle

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/alerts"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/config"
)

// eicar is the EICAR anti-malware test file, built at run time so this
// source file does not itself trip a scanner.
func eicar() []byte {
	return []byte(`X5O!P%@AP[4\PZX54(P^)7CC)7}$` + "EICAR-STANDARD-ANTIVIRUS-" + `TEST-FILE!$H+H*`)
}

func clamscan(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("clamscan")
	if err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_CLAMSCAN") != "" {
			t.Fatal("clamscan is required (RINGMASTER_REQUIRE_CLAMSCAN) but not installed: apt-get install clamav")
		}
		t.Skip("SKIPPED: clamscan (Debian package clamav) is not installed; .ci/run installs it")
	}
	return path
}

// TestPipelineSteps: a malware scan (Debian's clamscan with a signature
// database holding the EICAR test file's hash) and a webhook that must
// answer pass run between verification and signing. EICAR fails the
// publish at the scan with the scanner's verdict; a clean file passes
// both; a webhook answering fail stops the publish; a failed publish is
// retried with a corrected payload; every verdict is on the update and
// in the audit log.
func TestPipelineSteps(t *testing.T) {
	scanner := clamscan(t)
	ctx := context.Background()
	sum := md5.Sum(eicar())
	db := filepath.Join(t.TempDir(), "eicar.hdb")
	if err := os.WriteFile(db, fmt.Appendf(nil, "%s:%d:Eicar-Test-Signature\n", hex.EncodeToString(sum[:]), len(eicar())), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls, badSignatures atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Ringmaster-Signature") != alerts.Sign("hook-secret", body) {
			badSignatures.Add(1)
		}
		var req struct {
			Product  string `json:"product"`
			Payloads []struct {
				SHA256 string `json:"sha256"`
			} `json:"payloads"`
		}
		json.Unmarshal(body, &req)
		if req.Product == "unreviewed" {
			fmt.Fprint(w, `{"verdict": "fail", "detail": "no change review on record"}`)
			return
		}
		fmt.Fprint(w, `{"verdict": "pass", "detail": "reviewed"}`)
	}))
	defer hook.Close()
	s := apptest.Start(t, "", func(c *config.Config) {
		c.PipelineSteps = []config.PipelineStep{
			{Name: "malware-scan", Command: []string{scanner, "--no-summary", "--database", db}},
			{Name: "change-review", URL: hook.URL, Secret: "hook-secret", Timeout: 10 * time.Second},
		}
	})
	opts := client.PublishOptions{Poll: 50 * time.Millisecond}
	file := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "tool.bin")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	_, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "tool", Version: "1.0"}, []string{file(eicar())}, opts)
	if err == nil || !strings.Contains(err.Error(), "malware-scan failed") || !strings.Contains(err.Error(), "Eicar-Test-Signature") {
		t.Fatalf("publishing the EICAR file: %v", err)
	}
	us, _ := s.Admin.Updates(ctx, "tool")
	infected, _ := s.Admin.Update(ctx, us[0].ID)
	if infected.State != "failed" || len(infected.Checks) != 1 || infected.Checks[0].Verdict != "fail" || !strings.Contains(infected.Checks[0].Output, "FOUND") {
		t.Fatalf("the infected update: %+v", infected)
	}
	if calls.Load() != 0 {
		t.Fatal("the webhook step ran after the scan failed")
	}

	// The retry with a clean payload passes both steps and publishes.
	clean, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "tool", Version: "1.0"}, []string{file([]byte("a clean build"))}, opts)
	if err != nil || clean.ID != infected.ID || clean.State != "published" {
		t.Fatalf("retrying with a clean payload: %+v, %v", clean, err)
	}
	clean, _ = s.Admin.Update(ctx, clean.ID)
	var verdicts []string
	for _, c := range clean.Checks {
		verdicts = append(verdicts, fmt.Sprintf("%d:%s:%s", c.Attempt, c.Step, c.Verdict))
	}
	if got := strings.Join(verdicts, " "); got != "0:malware-scan:fail 1:malware-scan:pass 1:change-review:pass" {
		t.Fatalf("the verdicts of both attempts: %s", got)
	}
	if calls.Load() != 1 || badSignatures.Load() != 0 {
		t.Fatalf("webhook calls %d, bad signatures %d", calls.Load(), badSignatures.Load())
	}

	// A webhook answering fail stops the publish with its detail.
	_, err = s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "unreviewed", Version: "2.0"}, []string{file([]byte("another clean build"))}, opts)
	if err == nil || !strings.Contains(err.Error(), "change-review failed: no change review on record") {
		t.Fatalf("publishing what the webhook refuses: %v", err)
	}
	es, _ := s.Admin.Audit(ctx, client.AuditFilter{Action: "update.check"})
	if len(es) != 5 {
		t.Fatalf("%d update.check audit entries; want 5", len(es))
	}
}
