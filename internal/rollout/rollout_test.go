package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/fault"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func at(h float64) time.Time { return t0.Add(time.Duration(h * float64(time.Hour))) }

func waves(pcts ...float64) []Wave {
	var ws []Wave
	for _, p := range pcts {
		ws = append(ws, Wave{Percent: p})
	}
	return ws
}

func TestStep(t *testing.T) {
	start := at(2)
	deadline := at(10)
	basic := Plan{Waves: waves(1, 10, 50, 100), Bake: Duration(24 * time.Hour)}
	tests := []struct {
		name     string
		plan     Plan
		status   Status
		obs      Observations
		now      time.Time
		want     Status
		wantActs []string
	}{
		{"scheduled starts wave 1 at once", basic, Initial(), Observations{}, at(0),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, []string{"wave_started"}},
		{"scheduled waits for its start", Plan{Waves: waves(100), Start: &start}, Initial(), Observations{}, at(1),
			Initial(), nil},
		{"scheduled starts at its start", Plan{Waves: waves(100), Start: &start}, Initial(), Observations{}, at(2),
			Status{State: Running, Wave: 0, WaveStarted: at(2), Percent: 100, Approved: -1}, []string{"wave_started"}},
		{"first wave waits for approval", Plan{Waves: waves(10, 100), RequireApproval: true}, Initial(), Observations{}, at(0),
			Status{State: Scheduled, Wave: -1, Approved: -1, AwaitingApproval: true}, []string{"approval_requested"}},
		{"asks for approval only once", Plan{Waves: waves(10, 100), RequireApproval: true},
			Status{State: Scheduled, Wave: -1, Approved: -1, AwaitingApproval: true}, Observations{}, at(1),
			Status{State: Scheduled, Wave: -1, Approved: -1, AwaitingApproval: true}, nil},
		{"approved first wave starts", Plan{Waves: waves(10, 100), RequireApproval: true},
			Status{State: Scheduled, Wave: -1, Approved: 0, AwaitingApproval: true}, Observations{}, at(1),
			Status{State: Running, Wave: 0, WaveStarted: at(1), Percent: 10, Approved: 0}, []string{"wave_started"}},
		{"wave bakes", basic, Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, Observations{}, at(23.9),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, nil},
		{"baked wave gives way to the next", basic, Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, Observations{}, at(24),
			Status{State: Running, Wave: 1, WaveStarted: at(24), Percent: 10, Approved: -1}, []string{"wave_started"}},
		{"next wave waits for approval", Plan{Waves: waves(10, 100), RequireApproval: true},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: 0}, Observations{}, at(1),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: 0, AwaitingApproval: true}, []string{"approval_requested"}},
		{"last wave completes after baking", basic, Status{State: Running, Wave: 3, WaveStarted: at(0), Percent: 100, Approved: -1}, Observations{}, at(24),
			Status{State: Completed, Wave: 3, WaveStarted: at(0), Percent: 100, Approved: -1}, []string{"completed"}},
		{"deadline skips bake", Plan{Waves: waves(1, 100), Bake: Duration(100 * time.Hour), Deadline: &deadline},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, Observations{}, at(10),
			Status{State: Running, Wave: 1, WaveStarted: at(10), Percent: 100, Approved: -1}, []string{"wave_started"}},
		{"deadline does not skip approval", Plan{Waves: waves(1, 100), RequireApproval: true, Deadline: &deadline},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: 0}, Observations{}, at(11),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: 0, AwaitingApproval: true}, []string{"approval_requested"}},
		{"paced wave grows by whole periods", Plan{Waves: []Wave{{DevicesPerPeriod: 100, Period: Duration(time.Hour)}}},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 0, Approved: -1}, Observations{AudienceSize: 1000}, at(3.5),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 30, Approved: -1}, []string{"exposure_raised"}},
		{"paced wave without an audience estimate holds still", Plan{Waves: []Wave{{DevicesPerPeriod: 100, Period: Duration(time.Hour)}}},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 0, Approved: -1}, Observations{}, at(3.5),
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 0, Approved: -1}, nil},
		{"paced wave completes at its cap", Plan{Waves: []Wave{{DevicesPerPeriod: 500, Period: Duration(time.Hour)}}},
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 50, Approved: -1}, Observations{AudienceSize: 1000}, at(2),
			Status{State: Completed, Wave: 0, WaveStarted: at(0), Percent: 100, Approved: -1}, []string{"exposure_raised", "completed"}},
		{"paused does not move", basic, Status{State: Paused, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, Observations{}, at(100),
			Status{State: Paused, Wave: 0, WaveStarted: at(0), Percent: 1, Approved: -1}, nil},
		{"completed stays", basic, Status{State: Completed, Wave: 3, Percent: 100, Approved: -1}, Observations{}, at(100),
			Status{State: Completed, Wave: 3, Percent: 100, Approved: -1}, nil},
		{"halted stays", basic, Status{State: Halted, Wave: 1, Percent: 10, Approved: -1}, Observations{}, at(100),
			Status{State: Halted, Wave: 1, Percent: 10, Approved: -1}, nil},
		{"cancelled stays", basic, Status{State: Cancelled, Wave: 1, Percent: 10, Approved: -1}, Observations{}, at(100),
			Status{State: Cancelled, Wave: 1, Percent: 10, Approved: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.plan.NoGate = true // the plan's own mechanics, without a gate's verdicts (TestStepWithGate)
			if err := tt.plan.Validate(); err != nil {
				t.Fatal(err)
			}
			got, acts := Step(tt.plan, tt.status, tt.obs, tt.now)
			if got != tt.want {
				t.Fatalf("status\n got %+v\nwant %+v", got, tt.want)
			}
			var kinds []string
			for _, a := range acts {
				kinds = append(kinds, a.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tt.wantActs, ",") {
				t.Fatalf("actions %v, want %v", kinds, tt.wantActs)
			}
		})
	}
}

func TestApply(t *testing.T) {
	approval := Plan{Waves: waves(10, 50, 100), Bake: Duration(time.Hour), RequireApproval: true}
	plain := Plan{Waves: waves(10, 50, 100), Bake: Duration(time.Hour)}
	running := Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1}
	tests := []struct {
		name     string
		plan     Plan
		status   Status
		cmd      Command
		want     Status
		conflict string
	}{
		{"pause running", plain, running, Pause,
			Status{State: Paused, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1, PausedFrom: Running, PausedAt: at(5), By: "alice", Reason: "why"}, ""},
		{"pause scheduled", plain, Initial(), Pause,
			Status{State: Paused, Wave: -1, Approved: -1, PausedFrom: Scheduled, PausedAt: at(5), By: "alice", Reason: "why"}, ""},
		{"pause paused", plain, Status{State: Paused, By: "bob"}, Pause, Status{}, "already paused (by bob)"},
		{"resume: bake excludes the pause", plain, Status{State: Paused, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1, PausedFrom: Running, PausedAt: at(1)}, Resume,
			Status{State: Running, Wave: 0, WaveStarted: at(4), Percent: 10, Approved: -1, By: "alice", Reason: "why"}, ""},
		{"resume running", plain, running, Resume, Status{}, "not paused"},
		{"halt", plain, running, Halt, Status{State: Halted, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1, By: "alice", Reason: "why"}, ""},
		{"cancel", plain, running, Cancel, Status{State: Cancelled, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1, By: "alice", Reason: "why"}, ""},
		{"nothing after halt", plain, Status{State: Halted}, Resume, Status{}, "halted; nothing can change it"},
		{"nothing after cancel", plain, Status{State: Cancelled}, Cancel, Status{}, "cancelled"},
		{"approve next wave", approval, Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: 0, AwaitingApproval: true}, Approve,
			Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: 1, AwaitingApproval: true, By: "alice", Reason: "why"}, ""},
		{"approve twice", approval, Status{State: Running, Wave: 0, Approved: 1}, Approve, Status{}, "no wave is waiting for approval; wave 2 asks when wave 1 has baked"},
		{"approve before the wave asks", approval, Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: 0}, Approve, Status{}, "no wave is waiting"},
		{"approve before the start", approval, Status{State: Scheduled, Wave: -1, Approved: -1}, Approve, Status{}, "wave 1 asks when the deployment starts"},
		{"approve without approvals", plain, running, Approve, Status{}, "does not require approval"},
		{"approve after the last wave", approval, Status{State: Running, Wave: 2, Approved: 2}, Approve, Status{}, "no wave is left"},
		{"advance skips bake", plain, running, Advance,
			Status{State: Running, Wave: 1, WaveStarted: at(5), Percent: 50, Approved: -1, By: "alice", Reason: "why"}, ""},
		{"advance needs approval", approval, Status{State: Running, Wave: 0, Approved: 0}, Advance, Status{}, "needs approval first"},
		{"advance in the last wave", plain, Status{State: Running, Wave: 2}, Advance, Status{}, "last wave"},
		{"advance paused", plain, Status{State: Paused, Wave: 0}, Advance, Status{}, "only a running deployment"},
		{"unknown command", plain, running, "explode", Status{}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, act, err := Apply(tt.plan, tt.status, tt.cmd, "alice", "why", at(5))
			if tt.conflict != "" {
				if !fault.Is(err, fault.Conflict) || !strings.Contains(err.Error(), tt.conflict) {
					t.Fatalf("err = %v, want a conflict mentioning %q", err, tt.conflict)
				}
				if got != tt.status {
					t.Fatalf("a refused command changed the status: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("status\n got %+v\nwant %+v", got, tt.want)
			}
			if act.Kind == "" {
				t.Fatal("no action recorded")
			}
		})
	}
}

// Every command that stops or widens a rollout says why; a blank reason
// changes nothing.
func TestApplyNeedsReason(t *testing.T) {
	running := Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1}
	for _, cmd := range Commands {
		for _, reason := range []string{"", "  \t"} {
			got, _, err := Apply(Plan{Waves: waves(10, 50, 100)}, running, cmd, "alice", reason, at(5))
			if !fault.Is(err, fault.Invalid) || !strings.Contains(err.Error(), "reason") || got != running {
				t.Errorf("%s with reason %q: %v, status %+v", cmd, reason, err, got)
			}
		}
	}
}

func TestPlanValidate(t *testing.T) {
	for name, p := range map[string]Plan{
		"decreasing":          {Waves: waves(10, 5, 100)},
		"not reaching 100":    {Waves: waves(10, 50)},
		"over 100":            {Waves: waves(150)},
		"pace without period": {Waves: []Wave{{DevicesPerPeriod: 5}}},
		"bad window":          {Waves: waves(100), Window: &Window{Start: 60, End: 60}},
	} {
		if err := p.Validate(); !fault.Is(err, fault.Invalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := Plan{}
	if err := p.Validate(); err != nil || len(p.Waves) != 1 || p.Waves[0].Percent != 100 {
		t.Fatalf("empty plan: %v, %+v", err, p)
	}
	// Safe by default: more than one wave is gated unless no_gate says so;
	// one wave only when asked.
	multi := Plan{Waves: waves(1, 10, 100)}
	if err := multi.Validate(); err != nil || multi.Gate == nil {
		t.Fatalf("a multi-wave plan is not gated by default: %v, %+v", err, multi.Gate)
	}
	optOut := Plan{Waves: waves(1, 10, 100), NoGate: true}
	if err := optOut.Validate(); err != nil || optOut.Gate != nil {
		t.Fatalf("no_gate: %v, %+v", err, optOut.Gate)
	}
	single := Plan{Waves: waves(100)}
	if err := single.Validate(); err != nil || single.Gate != nil {
		t.Fatalf("a single wave was gated: %v, %+v", err, single.Gate)
	}
	both := Plan{Waves: waves(1, 100), NoGate: true, Gate: &Gate{}}
	if err := both.Validate(); !fault.Is(err, fault.Invalid) {
		t.Fatalf("gate and no_gate together: %v", err)
	}
	if ws, err := ParseWaves("1, 10,50%,100"); err != nil || len(ws) != 4 || ws[2].Percent != 50 {
		t.Fatalf("ParseWaves = %+v, %v", ws, err)
	}
}

func TestStepWithGate(t *testing.T) {
	gated := Plan{Waves: waves(10, 100), Bake: Duration(time.Hour), Gate: &Gate{}}
	loose := Plan{Waves: waves(10, 100), Bake: Duration(time.Hour), Gate: &Gate{AllowInconclusive: true}}
	running := Status{State: Running, Wave: 0, WaveStarted: at(0), Percent: 10, Approved: -1}
	verdict := func(v string) Observations {
		return Observations{Gate: &GateObservation{Verdict: v, Summary: "wave 1 " + v + ": numbers"}}
	}
	tests := []struct {
		name string
		plan Plan
		obs  Observations
		now  time.Time
		want State
		wave int
		act  string
	}{
		{"regression pauses at once, even mid-bake", gated, verdict("regressed"), at(0.1), Paused, 0, "gate_paused"},
		{"healthy wave advances after bake", gated, verdict("healthy"), at(1), Running, 1, "wave_started"},
		{"healthy wave still bakes", gated, verdict("healthy"), at(0.5), Running, 0, ""},
		{"inconclusive waits", gated, verdict("inconclusive"), at(5), Running, 0, ""},
		{"no verdict waits", gated, Observations{}, at(5), Running, 0, ""},
		{"inconclusive allowed advances", loose, verdict("inconclusive"), at(1), Running, 1, "wave_started"},
		{"inconclusive allowed still pauses on regression", loose, verdict("regressed"), at(1), Paused, 0, "gate_paused"},
		{"no gate ignores verdicts", Plan{Waves: waves(10, 100), Bake: Duration(time.Hour)}, verdict("regressed"), at(1), Running, 1, "wave_started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, acts := Step(tt.plan, running, tt.obs, tt.now)
			if got.State != tt.want || got.Wave != tt.wave {
				t.Fatalf("status %+v, want %s in wave %d", got, tt.want, tt.wave)
			}
			kind := ""
			if len(acts) > 0 {
				kind = acts[0].Kind
			}
			if kind != tt.act {
				t.Fatalf("actions %+v, want %q", acts, tt.act)
			}
			if tt.want == Paused && (got.By != GateActor || !strings.Contains(got.Reason, "regressed: numbers") || got.PausedFrom != Running) {
				t.Fatalf("gate pause %+v", got)
			}
		})
	}
}

// TestWatchAfterCompletion: a gated deployment stays under its gate for
// Watch after its last wave started; a regression then pauses the offers,
// and resuming returns it to completed. Ungated or older ones are left be.
func TestWatchAfterCompletion(t *testing.T) {
	p := Plan{Waves: waves(100), Gate: &Gate{}}
	s := Status{State: Completed, Wave: 0, Percent: 100, WaveStarted: t0}
	bad := Observations{Gate: &GateObservation{Verdict: "regressed", Summary: "crash rate 2% vs 0.5%"}}
	next, acts := Step(p, s, bad, at(72))
	if next.State != Paused || next.PausedFrom != Completed || len(acts) != 1 || acts[0].Kind != "gate_paused" {
		t.Fatalf("regression 3 days after completion: %+v %+v", next, acts)
	}
	if resumed, _, err := Apply(p, next, Resume, "alice", "false alarm", at(73)); err != nil || resumed.State != Completed {
		t.Fatalf("resume: %+v, %v", resumed, err)
	}
	if next, _ := Step(p, s, bad, at(24*8)); next.State != Completed {
		t.Fatalf("regression after the watch: %+v", next)
	}
	if next, _ := Step(Plan{Waves: waves(100)}, s, bad, at(72)); next.State != Completed {
		t.Fatalf("ungated: %+v", next)
	}
	if next, acts := Step(p, s, Observations{Gate: &GateObservation{Verdict: "healthy"}}, at(72)); next != s || len(acts) != 0 {
		t.Fatalf("healthy: %+v %+v", next, acts)
	}
}

func TestWaveShare(t *testing.T) {
	p := Plan{Waves: []Wave{{Percent: 1}, {Percent: 10}, {DevicesPerPeriod: 50, Period: Duration(time.Hour)}}}
	for i, want := range []float64{1, 9, 90, 0} {
		if got := p.WaveShare(i); got != want {
			t.Errorf("wave %d: share %g, want %g", i, got, want)
		}
	}
}

func TestPromote(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p := Plan{Ring: "canary", Waves: []Wave{{Percent: 20}, {Percent: 100}}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	done := Status{State: Completed, Wave: 1, Percent: 100, Approved: -1}
	if _, _, _, err := Promote(p, Status{State: Running, Wave: 0, Percent: 20}, "broad", nil, "a", "r", now); !fault.Is(err, fault.Conflict) {
		t.Fatalf("promoting a running deployment: %v", err)
	}
	np, st, act, err := Promote(p, done, "broad", nil, "alice", "canary healthy", now)
	if err != nil {
		t.Fatal(err)
	}
	// The new ring's waves restart from 20%: the last ring's plan again.
	if np.Ring != "broad" || len(np.Waves) != 4 || np.Waves[2].Percent != 20 || st.State != Running || st.Wave != 2 || st.Percent != 20 ||
		act.Kind != "promoted" || np.Promotions[0].AtWave != 2 || np.WaveOf(0) != 2 {
		t.Fatalf("promoted: plan %+v, status %+v, action %+v", np, st, act)
	}
	// Its last wave completes the deployment again; a second promotion
	// appends after it.
	st, _ = Step(np, Status{State: Running, Wave: 3, Percent: 100, WaveStarted: now.Add(-time.Hour), Approved: -1}, Observations{Gate: &GateObservation{Verdict: "healthy"}}, now)
	if st.State != Completed {
		t.Fatalf("after the new ring's last wave: %+v", st)
	}
	// Waves before a promotion must have reached 100%.
	bad := np
	bad.Waves = []Wave{{Percent: 20}, {Percent: 50}, {Percent: 20}, {Percent: 100}}
	if err := bad.Validate(); !fault.Is(err, fault.Invalid) {
		t.Fatalf("a segment ending below 100%%: %v", err)
	}
	// With approvals, the new ring waits: nothing of it is offered.
	p.RequireApproval = true
	_, st, _, err = Promote(p, done, "broad", nil, "alice", "canary healthy", now)
	if err != nil || st.State != Running || !st.AwaitingApproval || st.Percent != 0 {
		t.Fatalf("promotion of a plan that needs approvals: %+v, %v", st, err)
	}
}
