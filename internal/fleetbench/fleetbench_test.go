package fleetbench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringmaster/ringmaster/internal/cli"
	"github.com/ringmaster/ringmaster/internal/fleetbench"
)

// TestFleetbenchOrdering runs `ringmaster fleetbench --devices 100000` on
// seeded worlds and asserts how the policies order, not absolute times:
// Ringmaster's (the server's own rollout.Step and gate) exposes strictly
// fewer devices to every globally bad release than every hawkBit-style
// error threshold, with no more false halts on good releases.
func TestFleetbenchOrdering(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fleetbench.json")
	var stdout, stderr bytes.Buffer
	args := []string{"fleetbench", "--devices", "100000", "--worlds", "1", "--seed", "7",
		"--classes", "good,confounded-good,bad+1pp,bad-x2,bad-x5",
		"--policies", "ringmaster,hawkbit-3%,hawkbit-5%,hawkbit-10%", "--json", out}
	if code := cli.Main(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("fleetbench exited %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep fleetbench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 5*4 {
		t.Fatalf("%d results", len(rep.Results))
	}
	for _, c := range []fleetbench.Class{fleetbench.BadOnePP, fleetbench.BadDouble, fleetbench.BadFive} {
		ours, _ := rep.Find("ringmaster", c)
		if ours.HaltRate < 1 {
			t.Errorf("%s: ringmaster halted in %.0f%% of worlds", c, 100*ours.HaltRate)
		}
		for _, p := range []string{"hawkbit-3%", "hawkbit-5%", "hawkbit-10%"} {
			theirs, _ := rep.Find(p, c)
			if ours.MeanExposedAtDetection >= theirs.MeanExposedAtDetection {
				t.Errorf("%s: ringmaster exposed %.0f devices, %s %.0f", c, ours.MeanExposedAtDetection, p, theirs.MeanExposedAtDetection)
			}
			if ours.MeanExcessFailures >= theirs.MeanExcessFailures {
				t.Errorf("%s: ringmaster caused %.1f excess failures, %s %.1f", c, ours.MeanExcessFailures, p, theirs.MeanExcessFailures)
			}
		}
	}
	for _, c := range []fleetbench.Class{fleetbench.Good, fleetbench.Confounded} {
		ours, _ := rep.Find("ringmaster", c)
		for _, p := range []string{"hawkbit-3%", "hawkbit-5%", "hawkbit-10%"} {
			theirs, _ := rep.Find(p, c)
			if ours.HaltRate > theirs.HaltRate {
				t.Errorf("%s: ringmaster falsely halted in %.0f%% of worlds, %s in %.0f%%", c, 100*ours.HaltRate, p, 100*theirs.HaltRate)
			}
		}
	}
	if !bytes.Contains(stdout.Bytes(), []byte("ringmaster")) {
		t.Fatalf("no table:\n%s", stdout.String())
	}
}
