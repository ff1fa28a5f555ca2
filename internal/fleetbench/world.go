// Package fleetbench simulates fleets of devices receiving releases under
// rollout policies, in simulated time, to compare Ringmaster's policy with
// the field's on identical seeded worlds. Ringmaster's policy is the
// server's own code: rollout.Step moves the waves, controller.Judge is the
// health gate and cohort detector, targeting.Bucket and Plan.WaveOf place
// devices, and holds are CEL rules matched by the targeting package.
package fleetbench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"

	"github.com/ringmaster/ringmaster/internal/health"
	"github.com/ringmaster/ringmaster/internal/risk"
	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// attribute is one device property and its possible values.
type attribute struct {
	name   string
	values []string
	// visible: reported by devices (hidden ones model causes the server
	// cannot see); cohort: counted in health cells (the server's default
	// cohort_attributes).
	visible, cohort bool
}

// Device is one simulated device.
type Device struct {
	ID    string
	attrs []uint8 // value index per world attribute
	// logit is the device's persistent baseline failure log-odds.
	logit float64
	// phase is the hour of day the device checks in.
	phase uint8
}

// World is a seeded fleet.
type World struct {
	attrs   []attribute
	Devices []Device
	index   map[string]int // attribute name → position
	seed    uint64

	pastOnce     sync.Once
	pastInstalls []pastInstall
	priorOnce    sync.Once
	prior        []health.CellDevices
	riskOnce     sync.Once
	riskModel    *worldRisk
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// NewWorld builds n devices with about 25 correlated attributes and a
// baseline failure rate near base, from seed.
func NewWorld(n int, base float64, seed uint64) *World {
	rng := rand.New(rand.NewPCG(seed, 0xf1ee7))
	w := &World{index: map[string]int{}, seed: seed}
	add := func(name string, vals []string, visible, cohort bool) {
		w.index[name] = len(w.attrs)
		w.attrs = append(w.attrs, attribute{name: name, values: vals, visible: visible, cohort: cohort})
	}
	add("oem", values("oem", 8), true, true)
	add("arch", []string{"x64", "arm64"}, true, true)
	add("model", values("model", 32), true, true)        // 4 per OEM
	add("firmware", values("fw", 96), true, true)        // 3 per model
	add("os_build", values("build", 6), true, true)      // correlated with channel
	add("region", values("region", 8), true, true)       //
	add("gpu_driver", values("gpu", 6), true, true)      // correlated with OEM
	add("storage_driver", values("nvme", 5), true, true) // correlated with model
	add("network_driver", values("net", 5), true, true)
	add("antivirus", values("av", 5), true, true)
	add("channel", []string{"canary", "beta", "stable"}, true, true)
	add("audio_driver", values("audio", 4), true, false)
	add("ram_gb", []string{"4", "8", "16", "32"}, true, false)
	add("disk_gb", []string{"128", "256", "512", "1024"}, true, false)
	add("device_age", []string{"0y", "1y", "2y", "3y", "4y+"}, true, false)
	add("bios", values("bios", 6), true, false)
	add("display", []string{"hd", "fhd", "qhd", "uhd"}, true, false)
	add("form_factor", []string{"laptop", "desktop", "tablet"}, true, false)
	add("locale", values("locale", 10), true, false)
	add("tpm", []string{"none", "1.2", "2.0"}, true, false)
	add("secure_boot", []string{"on", "off"}, true, false)
	add("battery", []string{"good", "worn"}, true, false)
	add("cpu_vendor", []string{"v1", "v2", "v3"}, true, false)
	add("touch", []string{"yes", "no"}, true, false)
	add("component", values("component", 50), false, false) // a part the server never sees

	// Persistent effects on failure log-odds per attribute value.
	effects := make([][]float64, len(w.attrs))
	for i, a := range w.attrs {
		effects[i] = make([]float64, len(a.values))
		sd := 0.15
		if a.name == "model" || a.name == "firmware" || a.name == "device_age" {
			sd = 0.3
		}
		for j := range effects[i] {
			effects[i][j] = rng.NormFloat64() * sd
		}
	}
	zipf := func(n int) int { // skewed popularity
		return min(n-1, int(math.Floor(float64(n)*math.Pow(rng.Float64(), 1.8))))
	}
	w.Devices = make([]Device, n)
	base0 := math.Log(base / (1 - base))
	for i := range w.Devices {
		a := make([]uint8, len(w.attrs))
		oem := zipf(8)
		a[w.index["oem"]] = uint8(oem)
		arch := 0
		if oem >= 6 && rng.Float64() < 0.7 || rng.Float64() < 0.05 {
			arch = 1
		}
		a[w.index["arch"]] = uint8(arch)
		model := oem*4 + zipf(4)
		a[w.index["model"]] = uint8(model)
		a[w.index["firmware"]] = uint8(model*3 + zipf(3))
		channel := 2
		if r := rng.Float64(); r < 0.05 {
			channel = 0
		} else if r < 0.2 {
			channel = 1
		}
		a[w.index["channel"]] = uint8(channel)
		a[w.index["os_build"]] = uint8(min(5, max(0, 5-channel*2-rng.IntN(2))))
		a[w.index["gpu_driver"]] = uint8((oem + zipf(3)) % 6)
		a[w.index["storage_driver"]] = uint8((model + rng.IntN(2)) % 5)
		for _, name := range []string{"region", "network_driver", "antivirus", "audio_driver", "ram_gb", "disk_gb", "device_age",
			"bios", "display", "form_factor", "locale", "tpm", "secure_boot", "battery", "cpu_vendor", "touch", "component"} {
			j := w.index[name]
			a[j] = uint8(zipf(len(w.attrs[j].values)))
		}
		logit := base0 + rng.NormFloat64()*0.2
		for j := range a {
			logit += effects[j][a[j]]
		}
		w.Devices[i] = Device{ID: fmt.Sprintf("dev-%07d", i), attrs: a, logit: logit, phase: uint8(rng.IntN(24))}
	}
	// Re-center so the fleet's mean baseline failure rate is base.
	mean := 0.0
	for _, d := range w.Devices {
		mean += sigmoid(d.logit)
	}
	mean /= float64(n)
	shift := math.Log(base/(1-base)) - math.Log(mean/(1-mean))
	for i := range w.Devices {
		w.Devices[i].logit += shift
	}
	return w
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// Value returns a device's value of an attribute.
func (w *World) Value(d *Device, attr string) string {
	j := w.index[attr]
	return w.attrs[j].values[d.attrs[j]]
}

// Attributes returns what a device reports (visible attributes only).
func (w *World) Attributes(d *Device) map[string]string {
	m := make(map[string]string, len(w.attrs))
	for j, a := range w.attrs {
		if a.visible {
			m[a.name] = a.values[d.attrs[j]]
		}
	}
	return m
}

// CohortAttributes are the attributes health is counted by (the server's
// default cohort_attributes).
func (w *World) CohortAttributes() []string {
	var out []string
	for _, a := range w.attrs {
		if a.cohort {
			out = append(out, a.name)
		}
	}
	return out
}

// Attributes count (for reports).
func (w *World) AttributeCount() int { return len(w.attrs) }

// cohort is a set of devices sharing attribute values (for cohort-bad
// releases and ambient incidents).
type cohort struct {
	attr  string
	value uint8
}

func (w *World) in(d *Device, c cohort) bool { return d.attrs[w.index[c.attr]] == c.value }

// pickCohort chooses an attribute value whose share of the fleet is
// closest to share, among the given attributes.
func (w *World) pickCohort(rng *rand.Rand, attrs []string, share float64) (cohort, float64) {
	type cand struct {
		c cohort
		s float64
	}
	var cands []cand
	for _, name := range attrs {
		j := w.index[name]
		counts := make([]int, len(w.attrs[j].values))
		for i := range w.Devices {
			counts[w.Devices[i].attrs[j]]++
		}
		for v, n := range counts {
			if n > 0 {
				cands = append(cands, cand{cohort{name, uint8(v)}, float64(n) / float64(len(w.Devices))})
			}
		}
	}
	sort.Slice(cands, func(a, b int) bool {
		da, db := math.Abs(math.Log(cands[a].s/share)), math.Abs(math.Log(cands[b].s/share))
		if da != db {
			return da < db
		}
		return cands[a].c.attr < cands[b].c.attr
	})
	k := min(len(cands), 3)
	c := cands[rng.IntN(k)]
	return c.c, c.s
}

// worldRisk is a risk model trained on a past release of the world, and
// every device's predicted risk.
type worldRisk struct {
	model     *risk.Model
	scores    []float64
	fleetMean float64
}

// pastReleaseShare is the share of the fleet whose outcomes of a past
// (good) release train the risk model.
const pastReleaseShare = 0.15

// pastInstall is one device's install of a past (good) release.
type pastInstall struct {
	dev     int32
	outcome Outcome
}

// past returns (once) the world's past release: a random pastReleaseShare
// of the fleet installed a good release and 97% reported (each device
// failing at its own baseline risk; rollbacks and crashes at the fleet's).
func (w *World) past() []pastInstall {
	w.pastOnce.Do(func() {
		rng := rand.New(rand.NewPCG(w.seed, 0x7157))
		good := release{class: Good, oddsMul: 1, crashMul: 1}
		for i := range w.Devices {
			if rng.Float64() >= pastReleaseShare {
				continue
			}
			if o, delay := good.install(w, &w.Devices[i], 0, rng); delay >= 0 {
				w.pastInstalls = append(w.pastInstalls, pastInstall{dev: int32(i), outcome: o})
			}
		}
	})
	return w.pastInstalls
}

// priorCells returns (once) the past release's device counts per cohort
// cell, as the server's health counts keep them (telemetry.Cells): the
// gate's per-cohort baselines.
func (w *World) priorCells() []health.CellDevices {
	w.priorOnce.Do(func() {
		counts := map[string]map[string]int64{}
		cohort := w.CohortAttributes()
		for _, p := range w.past() {
			for _, c := range telemetry.Cells(w.Attributes(&w.Devices[p.dev]), cohort, nil)[1:] {
				if counts[c] == nil {
					counts[c] = map[string]int64{}
				}
				counts[c][p.outcome.install()]++
				if p.outcome == RolledBack || p.outcome == Crashed {
					counts[c][p.outcome.event()]++
				}
			}
		}
		w.prior = make([]health.CellDevices, 0, len(counts))
		for c, m := range counts {
			w.prior = append(w.prior, health.CellDevices{Cell: c, Devices: m})
		}
		sort.Slice(w.prior, func(a, b int) bool { return w.prior[a].Cell < w.prior[b].Cell })
	})
	return w.prior
}

// risk trains (once) the world's risk model on the past release (which it
// can learn only through the attributes the server sees).
func (w *World) risk() *worldRisk {
	w.riskOnce.Do(func() {
		var ex []risk.Example
		for _, p := range w.past() {
			ex = append(ex, risk.Example{Attributes: w.Attributes(&w.Devices[p.dev]), Failed: p.outcome == InstallFailed || p.outcome == DownloadFailed})
		}
		m, err := risk.Train(ex, risk.Options{})
		if err != nil {
			panic(fmt.Sprintf("risk model: %v", err)) // a world always has failures and successes
		}
		r := &worldRisk{model: m, scores: make([]float64, len(w.Devices))}
		for i := range w.Devices {
			r.scores[i] = m.Score(w.Attributes(&w.Devices[i]))
			r.fleetMean += r.scores[i]
		}
		r.fleetMean /= float64(len(w.Devices))
		m.Calibrate(r.scores)
		w.riskModel = r
	})
	return w.riskModel
}
