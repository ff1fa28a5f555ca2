package agents

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

// TestMenderArtifactPublish: a product whose Mender devices install
// Mender artifacts accepts an artifact made by mender-artifact and fails
// the publish of a .mender that is not one, saying why.
func TestMenderArtifactPublish(t *testing.T) {
	ctx := context.Background()
	tool := need(t, "mender-artifact", "mender-artifact")
	s := apptest.Start(t, "", nil)
	if _, err := s.Admin.PutProduct(ctx, client.Product{Name: "kiosk-app", Formats: map[string]string{"mender": "mender"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf, art := filepath.Join(dir, "kiosk.conf"), filepath.Join(dir, "kiosk-2.0.0.mender")
	write(t, conf, []byte("url = https://example.com\n"))
	if out, err := exec.Command(tool, "write", "module-image", "-T", "single-file", "-n", "kiosk-2.0.0", "-t", "kiosk-v1",
		"-o", art, "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("mender-artifact: %v\n%s", err, out)
	}
	u, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "kiosk-app", Version: "2.0.0"}, []string{art}, client.PublishOptions{Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("a real artifact: %v", err)
	}
	if f := u.Payloads[0].Format; f == nil || f.Format != "mender" || f.ArtifactName != "kiosk-2.0.0" || len(f.DeviceTypes) != 1 || f.DeviceTypes[0] != "kiosk-v1" {
		t.Fatalf("the artifact's header as read at publish: %+v", f)
	}
	bad := filepath.Join(dir, "kiosk-2.0.1.mender")
	b, _ := os.ReadFile(art)
	write(t, bad, b[512:]) // without its version header
	if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "kiosk-app", Version: "2.0.1"}, []string{bad}, client.PublishOptions{Poll: 50 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "not a Mender artifact") {
		t.Fatalf("a broken artifact: %v", err)
	}
}
