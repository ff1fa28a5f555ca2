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
// error threshold, with no more false halts on good releases, which it
// takes to everyone without false holds (an ambient incident included); and
// risk-ordered targeting spares at least 30% of the failures among the
// first 10% of the fleet to install a good release, with at most 10% more
// harm than random order on bad ones.
func TestFleetbenchOrdering(t *testing.T) {
	out := filepath.Join(t.TempDir(), "fleetbench.json")
	var stdout, stderr bytes.Buffer
	args := []string{"fleetbench", "--devices", "100000", "--worlds", "1", "--seed", "7",
		"--classes", "good,confounded-good,bad+1pp,bad-x2,bad-x5",
		"--policies", "ringmaster,ringmaster-risk,hawkbit-3%,hawkbit-5%,hawkbit-10%", "--json", out}
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
	if len(rep.Results) != 5*5 {
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
		// A good release reaches everyone (the gate does not stall on
		// metrics a wave cannot prove) and holds nobody.
		if ours.MedianHoursTo100 < 0 || ours.FalseHolds > 0 {
			t.Errorf("%s: ringmaster reached 100%% after %.0f hours (-1: never) with %d false holds", c, ours.MedianHoursTo100, ours.FalseHolds)
		}
		for _, p := range []string{"hawkbit-3%", "hawkbit-5%", "hawkbit-10%"} {
			theirs, _ := rep.Find(p, c)
			if ours.HaltRate > theirs.HaltRate {
				t.Errorf("%s: ringmaster falsely halted in %.0f%% of worlds, %s in %.0f%%", c, 100*ours.HaltRate, p, 100*theirs.HaltRate)
			}
		}
	}
	random, _ := rep.Find("ringmaster", fleetbench.Good)
	ordered, _ := rep.Find("ringmaster-risk", fleetbench.Good)
	if ordered.HaltRate > 0 || ordered.MeanEarlyFailures > 0.7*random.MeanEarlyFailures {
		t.Errorf("good release: risk order halted in %.0f%% of worlds with %.1f failures in the first 10%%, random order %.1f",
			100*ordered.HaltRate, ordered.MeanEarlyFailures, random.MeanEarlyFailures)
	}
	for _, c := range []fleetbench.Class{fleetbench.BadOnePP, fleetbench.BadDouble, fleetbench.BadFive} {
		random, _ := rep.Find("ringmaster", c)
		ordered, _ := rep.Find("ringmaster-risk", c)
		if ordered.HaltRate < 1 || ordered.MeanExcessFailures > 1.1*random.MeanExcessFailures {
			t.Errorf("%s: risk order halted in %.0f%% of worlds after %.1f excess failures, random order %.1f",
				c, 100*ordered.HaltRate, ordered.MeanExcessFailures, random.MeanExcessFailures)
		}
	}
	if !bytes.Contains(stdout.Bytes(), []byte("ringmaster")) {
		t.Fatalf("no table:\n%s", stdout.String())
	}
}
