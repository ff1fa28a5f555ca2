package lifecycle

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
)

func randomFile(t *testing.T, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(t.TempDir(), "payload.bin")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRollback: 1.2 rolled out and was halted; rolling it back to 1.1
// offers 1.1, marked as a rollback, in gated waves, only to devices on
// 1.2; the SDK installs it (and refuses the same downgrade unmarked);
// devices on 1.1 are offered nothing; explain names the rollback.
func TestRollback(t *testing.T) {
	ctx := context.Background()
	s := apptest.Start(t, "", nil)
	opts := client.PublishOptions{Poll: 50 * time.Millisecond}
	for _, v := range []string{"1.1", "1.2"} {
		if _, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "svc", Version: v, Kind: "app"}, []string{randomFile(t, 64<<10)}, opts); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := s.Admin.DeployPlan(ctx, "svc", "1.2", client.Plan{Waves: []client.Wave{{Percent: 100}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Rollback(ctx, bad.ID, "1.3", "boot loop"); !client.IsKind(err, "invalid") && !client.IsKind(err, "not-found") {
		t.Fatalf("rolling back to a version that is not earlier: %v", err)
	}
	if _, err := s.Admin.Rollback(ctx, bad.ID, "1.1", ""); !client.IsKind(err, "invalid") {
		t.Fatalf("rolling back without a reason: %v", err)
	}
	if _, err := s.Admin.Command(ctx, bad.ID, "halt", "boot loop on contoso"); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Admin.Deployment(ctx, bad.ID); err != nil || d.ProposedRollback != "1.1" {
		t.Fatalf("a halted 1.2 proposes a rollback to 1.1: %q, %v", d.ProposedRollback, err)
	}

	rb, err := s.Admin.Rollback(ctx, bad.ID, "1.1", "boot loop on contoso", client.Wave{Percent: 50}, client.Wave{Percent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Version != "1.1" || rb.Plan.Rollback == nil || rb.Plan.Rollback.Deployment != bad.ID || rb.Plan.Gate == nil || len(rb.Plan.Waves) != 2 || rb.Wave != 0 {
		t.Fatalf("the rollback deployment: %+v (plan %+v)", rb, rb.Plan)
	}
	if again, err := s.Admin.Rollback(ctx, bad.ID, "1.1", "boot loop on contoso", client.Wave{Percent: 50}, client.Wave{Percent: 100}); err != nil || again.ID != rb.ID {
		t.Fatalf("repeating the rollback: %s, %v (want %s)", again.ID, err, rb.ID)
	}
	if d, _ := s.Admin.Deployment(ctx, bad.ID); d.ProposedRollback != "" {
		t.Fatalf("a rolled-back deployment still proposes %q", d.ProposedRollback)
	}

	device, _ := client.New(s.URL, "")
	offers := func(installed string) (offered []client.Offer, asked int) {
		for i := range 60 {
			r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: fmt.Sprintf("dev-%s-%02d", installed, i),
				Installed: []client.Installed{{Product: "svc", Version: installed}}})
			if err != nil {
				t.Fatal(err)
			}
			offered = append(offered, r.Offers...)
		}
		return offered, 60
	}
	first, n := offers("1.2")
	if len(first) == 0 || len(first) == n {
		t.Fatalf("wave 1 of the rollback (50%%) offered %d of %d devices on 1.2", len(first), n)
	}
	for _, o := range first {
		if o.Version != "1.1" || o.Rollback == nil || o.Rollback.FromVersion != "1.2" || o.Rollback.DeploymentID != bad.ID ||
			o.Rollback.Reason != "boot loop on contoso" || o.DeploymentID != rb.ID {
			t.Fatalf("rollback offer: %+v (rollback %+v)", o, o.Rollback)
		}
	}
	if on11, _ := offers("1.1"); len(on11) != 0 {
		t.Fatalf("devices on 1.1 were offered %+v", on11)
	}

	// The SDK installs the rollback on a device running 1.2, and refuses
	// the same downgrade when the offer does not say it is one.
	up, err := device.NewUpdater(client.UpdaterConfig{TrustedRoot: pinnedRoot(t, s), CacheDir: t.TempDir(),
		Running: func(string) string { return "1.2" }})
	if err != nil {
		t.Fatal(err)
	}
	if paths, err := up.Fetch(ctx, first[0], t.TempDir()); err != nil || len(paths) != 1 {
		t.Fatalf("installing the rollback: %v, %v", paths, err)
	}
	unmarked := first[0]
	unmarked.Rollback = nil
	if _, err := up.Fetch(ctx, unmarked, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not marked as a rollback") {
		t.Fatalf("an unmarked downgrade: %v", err)
	}

	// Explain names the rollback for a device on 1.2 and why a device on
	// 1.1 is not offered it.
	ex, err := s.Admin.Explain(ctx, client.ExplainRequest{DeviceID: "dev-1.1-00", Installed: map[string]string{"svc": "1.1"}, UpdateID: rb.UpdateID})
	if err != nil {
		t.Fatal(err)
	}
	var named bool
	for _, d := range ex.Decisions {
		if d.DeploymentID == rb.ID {
			named = !d.Offered && d.FailedStep == "rollback" && strings.Contains(d.Checks[0].Detail, "rollback of deployment "+bad.ID)
		}
	}
	if !named {
		t.Fatalf("explain for a device on 1.1: %+v", ex.Decisions)
	}

	// The gate lets wave 2 start when asked: every device on 1.2 is offered.
	if _, err := s.Admin.Command(ctx, rb.ID, "advance", "wave 1 healthy"); err != nil {
		t.Fatal(err)
	}
	if all, n := offers("1.2"); len(all) != n {
		t.Fatalf("after wave 2 started, %d of %d devices on 1.2 were offered 1.1", len(all), n)
	}
}
