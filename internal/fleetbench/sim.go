package fleetbench

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/rollout"
	"github.com/ringmaster/ringmaster/internal/targeting"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// Horizon is how long a release is simulated.
const Horizon = 30 * 24

// Result is one policy's run on one world and release.
type Result struct {
	Policy string `json:"policy"`
	Class  Class  `json:"class"`
	World  uint64 `json:"world"`
	// Exposed: devices that installed the release.
	Exposed int64 `json:"exposed"`
	// ExcessFailures: expected failures beyond the fleet's own baseline
	// among the exposed (the release's harm).
	ExcessFailures float64 `json:"excess_failures"`
	// EarlyFailures: expected failures among the first 10% of the fleet
	// to install.
	EarlyFailures float64 `json:"early_failures"`
	// CohortExposed: exposed devices of a cohort-bad release's cohort.
	CohortExposed int64 `json:"cohort_exposed"`
	Halted        bool  `json:"halted"`
	// HaltHour / HoldHour: when it stopped, or first held a cohort (-1: never).
	HaltHour int `json:"halt_hour"`
	HoldHour int `json:"hold_hour"`
	// ExposedAtDetection: devices exposed when halted or (cohort) held.
	ExposedAtDetection       int64 `json:"exposed_at_detection"`
	CohortExposedAtDetection int64 `json:"cohort_exposed_at_detection"`
	Holds                    int   `json:"holds"`
	// FalseHolds: holds of a release that did not harm their devices.
	FalseHolds int `json:"false_holds"`
	// WronglyHeldDeviceDays: device-days good devices spent held.
	WronglyHeldDeviceDays float64 `json:"wrongly_held_device_days"`
	// Hours to offer 50, 90 and 100% of the fleet (-1: not within the horizon).
	To50           int     `json:"hours_to_50"`
	To90           int     `json:"hours_to_90"`
	To100          int     `json:"hours_to_100"`
	ComputeSeconds float64 `json:"compute_seconds"`
}

type report struct {
	dev     int32
	outcome Outcome
	other   bool  // an install of another release (the ambient reference)
	at      int32 // hour installed, as the device reports it
}

// otherInstallsPerDay is the share of the fleet installing some other
// release each day (overlapping releases: drivers, definitions, apps).
const otherInstallsPerDay = 0.30

type simulation struct {
	w          *World
	rel        release
	p          Policy
	plan       rollout.Plan // the policy's grouping, for WaveOf
	buckets    []uint32
	wave       []uint8
	cohort     []string
	rules      *targeting.Env
	obs        Observed
	events     []cellEvent // every counted event, for cells on demand
	needCells  bool
	risk       *worldRisk // for risk-ordered policies
	cellCounts *cellCounter
	// others and othersBefore: other releases' reported installs since
	// the rollout started (in the order they arrived) and in the week
	// before; othersHourly and releaseHourly count the other releases'
	// and this release's installs by hour, as the server's store does.
	others, othersBefore        []report
	othersHourly, releaseHourly health.Hourly
	ambientCells                map[string]*cellAmbient
}

// Run simulates release class cls on world w (seed identifies the world
// for the outcome draws) under policy p.
func Run(w *World, seed uint64, cls Class, p Policy, rules *targeting.Env) Result {
	start := time.Now()
	rel := newRelease(w, cls, rand.New(rand.NewPCG(seed, classSeed(cls))))
	s := &simulation{w: w, rel: rel, p: p, rules: rules, cohort: w.CohortAttributes()}
	_, s.needCells = p.(interface{ judgesCohorts() }) // Ringmaster's policies, risk-ordered too
	for _, pct := range p.Waves() {
		s.plan.Waves = append(s.plan.Waves, rollout.Wave{Percent: pct})
	}
	n := len(w.Devices)
	s.buckets, s.wave = make([]uint32, n), make([]uint8, n)
	salt := fmt.Sprintf("fleetbench-%d", seed)
	s.obs = Observed{All: map[string]int64{}, Waves: make([]map[string]int64, len(s.plan.Waves)),
		Offered: make([]int64, len(s.plan.Waves)), Size: make([]int64, len(s.plan.Waves))}
	for i := range s.obs.Waves {
		s.obs.Waves[i] = map[string]int64{}
	}
	// Devices by check-in hour, in bucket order.
	var byPhase [24][]int32
	order, riskOrdered := p.(orderer)
	if riskOrdered {
		s.risk = w.risk()
		s.obs.Risk = &RiskSums{Waves: make([]float64, len(s.plan.Waves)), Fleet: s.risk.fleetMean}
	}
	for i := range w.Devices {
		if riskOrdered {
			s.buckets[i] = s.risk.model.Position(salt, w.Devices[i].ID, s.risk.scores[i], order.explore())
		} else {
			s.buckets[i] = targeting.Bucket(salt, w.Devices[i].ID)
		}
		s.wave[i] = uint8(s.plan.WaveOf(s.buckets[i]))
		s.obs.Size[s.wave[i]]++
		byPhase[w.Devices[i].phase] = append(byPhase[w.Devices[i].phase], int32(i))
	}
	for g := range byPhase {
		sort.Slice(byPhase[g], func(a, b int) bool { return s.buckets[byPhase[g][a]] < s.buckets[byPhase[g][b]] })
	}
	s.obs.Cells = s.cells
	s.obs.AmbientCell = s.ambientCell
	if s.needCells {
		s.obs.PriorCells = w.priorCells()
	}
	s.othersHourly, s.releaseHourly = health.Hourly{}, health.Hourly{}
	var before health.Installs
	other := rand.New(rand.NewPCG(seed^classSeed(cls), 0x07e4))
	perHour := int(float64(n) * otherInstallsPerDay / 24)
	// otherInstalls: devices checking in at hour h install another
	// (good) release, subject to the same ambient incidents.
	otherInstalls := func(h int, report func(dev int32, o Outcome, delay int)) {
		devs := byPhase[(h%24+24)%24]
		for range perHour {
			i := devs[other.IntN(len(devs))]
			o, delay := otherRelease(rel, w, &w.Devices[i], h, other)
			report(i, o, delay)
		}
	}
	if s.needCells {
		for h := -7 * 24; h < 0; h++ {
			otherInstalls(h, func(i int32, o Outcome, delay int) {
				if delay >= 0 {
					countInstall(&before, o)
					s.othersBefore = append(s.othersBefore, report{dev: i, outcome: o, at: int32(h)})
				}
			})
		}
		s.obs.AmbientBefore = health.NewRate(before.Failed, before.Of)
	}
	res := Result{Policy: p.Name(), Class: cls, World: seed, HaltHour: -1, HoldHour: -1, To50: -1, To90: -1, To100: -1}
	var ptr [24]int
	pending := make([][]report, Horizon+24*8)
	var holds []*targeting.Rule
	var heldAt []int // hour each held good device was held
	for h := 0; h < Horizon; h++ {
		for _, r := range pending[h] {
			if r.other {
				s.othersHourly.Count(int64(r.at), r.outcome.install(), 1)
				s.others = append(s.others, r)
				continue
			}
			s.releaseHourly.Count(int64(r.at), r.outcome.install(), 1)
			s.count(r)
		}
		pending[h] = nil
		if s.needCells {
			s.obs.Ambient = health.TimeMatched(s.releaseHourly, s.othersHourly)
			otherInstalls(h, func(i int32, o Outcome, delay int) {
				if delay >= 0 && h+delay < len(pending) {
					pending[h+delay] = append(pending[h+delay], report{dev: i, outcome: o, other: true, at: int32(h)})
				}
			})
		}
		d := p.Step(h, &s.obs)
		for _, src := range d.Holds {
			rule, err := rules.Compile(src)
			if err != nil {
				panic(fmt.Sprintf("hold rule %q: %v", src, err))
			}
			holds = append(holds, rule)
			res.Holds++
			if res.HoldHour < 0 {
				res.HoldHour = h
			}
			if !s.holdIsRight(rule) {
				res.FalseHolds++
			}
			if cls.Cohort() && res.HoldHour == h {
				res.CohortExposedAtDetection = res.CohortExposed
			}
		}
		if d.Halted {
			res.Halted, res.HaltHour, res.ExposedAtDetection = true, h, res.Exposed
			if cls.Cohort() && res.HoldHour < 0 {
				res.CohortExposedAtDetection = res.CohortExposed
			}
			break
		}
		for _, t := range []struct {
			pct float64
			at  *int
		}{{50, &res.To50}, {90, &res.To90}, {100, &res.To100}} {
			if *t.at < 0 && d.Percent >= t.pct {
				*t.at = h
			}
		}
		limit := targeting.Threshold(d.Percent)
		g := h % 24
		devs := byPhase[g]
		for ; ptr[g] < len(devs) && s.buckets[devs[ptr[g]]] < limit; ptr[g]++ {
			i := devs[ptr[g]]
			dev := &w.Devices[i]
			if held(holds, w, dev) {
				if !rel.harms(w, dev) {
					heldAt = append(heldAt, h)
				}
				continue
			}
			rng := rand.New(rand.NewPCG(seed^classSeed(cls), uint64(i)))
			o, delay := rel.install(w, dev, h, rng)
			res.Exposed++
			fp := rel.failureP(w, dev, h)
			if res.Exposed <= int64(n/10) {
				res.EarlyFailures += fp
			}
			// Harm: failures beyond the device's own, plus crashes beyond the fleet's.
			res.ExcessFailures += fp - rel.baselineP(w, dev, h) + (1-fp)*(1-baseRollback)*baseCrash*(rel.crashMul-1)
			if rel.cohort != nil && w.in(dev, *rel.cohort) {
				res.CohortExposed++
			}
			s.obs.Offered[s.wave[i]]++
			s.add(i, "offered", h)
			if delay >= 0 && h+delay < len(pending) {
				pending[h+delay] = append(pending[h+delay], report{dev: i, outcome: o, at: int32(h)})
			}
		}
	}
	if !res.Halted { // a hold contains only its cohort: the rest was exposed
		res.ExposedAtDetection = res.Exposed
		if res.HoldHour < 0 {
			res.CohortExposedAtDetection = res.CohortExposed
		}
	}
	for _, at := range heldAt {
		res.WronglyHeldDeviceDays += float64(Horizon-at) / 24
	}
	res.ComputeSeconds = time.Since(start).Seconds()
	return res
}

func classSeed(c Class) uint64 {
	h := fnv.New64a()
	h.Write([]byte(c))
	return h.Sum64()
}

func held(holds []*targeting.Rule, w *World, d *Device) bool {
	if len(holds) == 0 {
		return false
	}
	td := &targeting.Device{ID: d.ID, Attributes: w.Attributes(d)}
	for _, r := range holds {
		if ok, err := r.Match(td); err == nil && ok {
			return true
		}
	}
	return false
}

// holdIsRight: a hold is right when most devices it matches are harmed
// by the release (any hold of a globally bad release).
func (s *simulation) holdIsRight(rule *targeting.Rule) bool {
	if s.rel.cohort == nil {
		return s.rel.class.Bad()
	}
	var matched, bad int
	for i := range s.w.Devices {
		d := &s.w.Devices[i]
		if held([]*targeting.Rule{rule}, s.w, d) {
			matched++
			if s.w.in(d, *s.rel.cohort) {
				bad++
			}
		}
		if matched >= 2000 {
			break
		}
	}
	return matched > 0 && bad*2 >= matched
}

// count records a device's reported outcome as the server counts it: an
// install that later rolled back or crashed also succeeded.
func (s *simulation) count(r report) {
	if s.risk != nil {
		s.obs.Risk.All += s.risk.scores[r.dev]
		s.obs.Risk.Waves[s.wave[r.dev]] += s.risk.scores[r.dev]
	}
	switch r.outcome {
	case RolledBack, Crashed:
		s.add(r.dev, Succeeded.event(), int(r.at))
	}
	s.add(r.dev, r.outcome.event(), int(r.at))
}

// install is the install outcome o implies: an install that later rolled
// back or crashed succeeded.
func (o Outcome) install() string {
	if o == RolledBack || o == Crashed {
		return Succeeded.event()
	}
	return o.event()
}

// countInstall counts another release's install outcome o in c.
func countInstall(c *health.Installs, o Outcome) {
	c.Of++
	if o == DownloadFailed || o == InstallFailed {
		c.Failed++
	}
}

// add counts device i's event, which happened at hour at.
func (s *simulation) add(i int32, event string, at int) {
	w := s.wave[i]
	s.obs.All[event]++
	s.obs.Waves[w][event]++
	if s.needCells {
		s.events = append(s.events, cellEvent{dev: i, event: uint8(slices.Index(cellEvents[:], event)), at: int32(at)})
	}
}

type cellEvent struct {
	dev   int32
	event uint8 // index in cellEvents
	at    int32 // hour it happened
}

// cellEvents are the events the gate counts per cell, by index.
var cellEvents = [...]string{"offered", "install_succeeded", "install_failed", "download_failed", "rolled_back", "post_install_crash"}

// cellCounter counts events per cohort cell incrementally: each device's
// cells (the server's own telemetry.Cells) are computed once, each call
// counts only the events since the last in arrays, and only the cells
// they touched have their maps (which live as long as the simulation)
// brought up to date.
type cellCounter struct {
	index    map[string]int32
	devCells map[int32][]int32
	counts   [][6]int64   // by cell index, all waves
	waves    [][][6]int64 // per wave, by cell index
	all      []health.CellDevices
	current  []map[string]map[string]int64 // per wave: cell → counts
	dirty    []int32                       // cells touched since the last call
	touched  []bool                        // by cell index
	sorted   []health.CellDevices          // all, by cell name
	cursor   int
}

func (s *simulation) deviceCells(dev int32) []int32 {
	cc := s.cellCounts
	if c, ok := cc.devCells[dev]; ok {
		return c
	}
	var out []int32
	for _, name := range telemetry.Cells(s.w.Attributes(&s.w.Devices[dev]), s.cohort, nil)[1:] {
		i, ok := cc.index[name]
		if !ok {
			i = int32(len(cc.all))
			cc.index[name] = i
			cc.all = append(cc.all, health.CellDevices{Cell: name, Devices: map[string]int64{}})
			cc.counts = append(cc.counts, [6]int64{})
			cc.touched = append(cc.touched, false)
			for w := range cc.waves {
				cc.waves[w] = append(cc.waves[w], [6]int64{})
			}
			cc.sorted = nil
		}
		out = append(out, i)
	}
	cc.devCells[dev] = out
	return out
}

// cells counts every reported event per cohort cell, from the start.
func (s *simulation) cells(wave int) ([]health.CellDevices, map[string]map[string]int64, error) {
	if s.cellCounts == nil {
		n := len(s.plan.Waves)
		s.cellCounts = &cellCounter{index: map[string]int32{}, devCells: map[int32][]int32{}, waves: make([][][6]int64, n),
			current: make([]map[string]map[string]int64, n)}
		for w := range n {
			s.cellCounts.current[w] = map[string]map[string]int64{}
		}
	}
	cc := s.cellCounts
	for _, e := range s.events[cc.cursor:] {
		w := s.wave[e.dev]
		for _, c := range s.deviceCells(e.dev) {
			cc.counts[c][e.event]++
			cc.waves[w][c][e.event]++
			if !cc.touched[c] {
				cc.touched[c] = true
				cc.dirty = append(cc.dirty, c)
			}
		}
	}
	cc.cursor = len(s.events)
	for _, c := range cc.dirty {
		cc.touched[c] = false
		cell := cc.all[c]
		for k, n := range cc.counts[c] {
			if n > 0 {
				cell.Devices[cellEvents[k]] = n
			}
		}
		for w := range cc.waves {
			if cc.waves[w][c] == ([6]int64{}) {
				continue
			}
			m := cc.current[w][cell.Cell]
			if m == nil {
				m = map[string]int64{}
				cc.current[w][cell.Cell] = m
			}
			for k, n := range cc.waves[w][c] {
				if n > 0 {
					m[cellEvents[k]] = n
				}
			}
		}
	}
	cc.dirty = cc.dirty[:0]
	if cc.sorted == nil {
		cc.sorted = slices.Clone(cc.all)
		sort.Slice(cc.sorted, func(a, b int) bool { return cc.sorted[a].Cell < cc.sorted[b].Cell })
	}
	cc.current[wave][""] = s.obs.Waves[wave]
	return cc.sorted, cc.current[wave], nil
}

// cellAmbient is one cohort cell's installs, counted incrementally.
type cellAmbient struct {
	in              func(dev int32) bool
	before          health.Rate
	others, release health.Hourly
	added, counted  int // cursors into s.others and s.events
}

// ambientCell is the failure rate of other releases' installs on a cohort
// cell's devices during the rollout, matched hour by hour with the
// release's installs there, and in the week before (the server's store
// does the same from device_outcomes and the registry).
func (s *simulation) ambientCell(cell string) (health.Rate, health.Rate, error) {
	if s.ambientCells == nil {
		s.ambientCells = map[string]*cellAmbient{}
	}
	a := s.ambientCells[cell]
	if a == nil {
		type kv struct {
			attr  int
			value string
		}
		var want []kv
		for k, v := range telemetry.ParseCell(cell) {
			want = append(want, kv{s.w.index[k], v})
		}
		a = &cellAmbient{others: health.Hourly{}, release: health.Hourly{}, in: func(dev int32) bool {
			d := &s.w.Devices[dev]
			for _, x := range want {
				if s.w.attrs[x.attr].values[d.attrs[x.attr]] != x.value {
					return false
				}
			}
			return true
		}}
		var before health.Installs
		for _, r := range s.othersBefore {
			if a.in(r.dev) {
				countInstall(&before, r.outcome)
			}
		}
		a.before = health.NewRate(before.Failed, before.Of)
		s.ambientCells[cell] = a
	}
	for ; a.added < len(s.others); a.added++ {
		if r := s.others[a.added]; a.in(r.dev) {
			a.others.Count(int64(r.at), r.outcome.install(), 1)
		}
	}
	for ; a.counted < len(s.events); a.counted++ {
		if e := s.events[a.counted]; a.in(e.dev) {
			a.release.Count(int64(e.at), cellEvents[e.event], 1)
		}
	}
	return health.CellTimeMatched(a.release, a.others), a.before, nil
}
