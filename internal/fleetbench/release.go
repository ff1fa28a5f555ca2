package fleetbench

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Class is a kind of release.
type Class string

const (
	Good           Class = "good"
	Better         Class = "slightly-better"
	BadHalfPP      Class = "bad+0.5pp"
	BadOnePP       Class = "bad+1pp"
	BadDouble      Class = "bad-x2"
	BadFive        Class = "bad-x5"
	CohortBad      Class = "cohort-bad-1%@10%"
	CohortBadLarge Class = "cohort-bad-5%@30%"
	CohortHidden   Class = "cohort-bad-hidden"
	LatentCrash    Class = "latent-crash"
	Confounded     Class = "confounded-good"
)

// Classes lists every class, good ones first.
var Classes = []Class{Good, Better, Confounded, BadHalfPP, BadOnePP, BadDouble, BadFive, CohortBad, CohortBadLarge, CohortHidden, LatentCrash}

// Bad reports whether a class harms devices (so exposure is harm).
func (c Class) Bad() bool { return c != Good && c != Better && c != Confounded }

// Cohort reports whether the harm is confined to a cohort.
func (c Class) Cohort() bool { return c == CohortBad || c == CohortBadLarge || c == CohortHidden }

// release is one release's effect on the devices that install it.
type release struct {
	class Class
	// addPP adds to the failure probability; oddsMul multiplies the odds.
	addPP, oddsMul float64
	cohort         *cohort
	cohortFail     float64 // failure probability inside the cohort
	cohortShare    float64
	crashMul       float64 // post-install crash rate multiplier
	crashDelay     bool    // crashes surface days after install
	ambient        *cohort // an incident unrelated to the release
	ambientFrom    int     // hours
	ambientTo      int
	ambientOddsMul float64
}

func newRelease(w *World, c Class, rng *rand.Rand) release {
	r := release{class: c, oddsMul: 1, crashMul: 1}
	switch c {
	case Better:
		r.oddsMul = 0.8
	case BadHalfPP:
		r.addPP = 0.005
	case BadOnePP:
		r.addPP = 0.01
	case BadDouble:
		r.oddsMul = 2
	case BadFive:
		r.oddsMul = 5
	case CohortBad, CohortBadLarge, CohortHidden:
		share, fail := 0.01, 0.10
		attrs := []string{"model", "firmware", "gpu_driver", "storage_driver"}
		switch c {
		case CohortBadLarge:
			share, fail = 0.05, 0.30
			attrs = []string{"oem", "model", "gpu_driver", "storage_driver", "antivirus"}
		case CohortHidden:
			share, fail = 0.01, 0.50
			attrs = []string{"component"} // the server cannot see it
		}
		co, s := w.pickCohort(rng, attrs, share)
		r.cohort, r.cohortShare, r.cohortFail = &co, s, fail
	case LatentCrash:
		r.crashMul, r.crashDelay = 4, true
	case Confounded:
		co, _ := w.pickCohort(rng, []string{"oem"}, 0.2)
		r.ambient, r.ambientFrom, r.ambientTo, r.ambientOddsMul = &co, 12+rng.IntN(24), 72+rng.IntN(48), 2
	}
	return r
}

// harms reports whether the release harms device d (holding it is right).
func (r release) harms(w *World, d *Device) bool {
	if r.cohort != nil {
		return w.in(d, *r.cohort)
	}
	return r.class.Bad()
}

// Outcome is what one install did.
type Outcome uint8

const (
	Succeeded Outcome = iota
	DownloadFailed
	InstallFailed
	RolledBack // installed, then rolled back
	Crashed    // installed, then crashed
)

func (o Outcome) event() string {
	return [...]string{"install_succeeded", "download_failed", "install_failed", "rolled_back", "post_install_crash"}[o]
}

// Baseline rates of the fleet (rollbacks and crashes among successes).
const (
	baseFailure  = 0.02
	baseRollback = 0.005
	baseCrash    = 0.005
)

// failureP is a device's chance to fail installing the release at hour h.
func (r release) failureP(w *World, d *Device, h int) float64 {
	logit := d.logit
	if r.ambient != nil && h >= r.ambientFrom && h < r.ambientTo && w.in(d, *r.ambient) {
		logit += math.Log(r.ambientOddsMul)
	}
	p := sigmoid(logit + math.Log(r.oddsMul))
	p = math.Min(0.999, p+r.addPP)
	if r.cohort != nil && w.in(d, *r.cohort) {
		p = math.Max(p, r.cohortFail)
	}
	return p
}

// baselineP is the device's chance to fail a good release at hour h (the
// harm that is not the release's).
func (r release) baselineP(w *World, d *Device, h int) float64 {
	logit := d.logit
	if r.ambient != nil && h >= r.ambientFrom && h < r.ambientTo && w.in(d, *r.ambient) {
		logit += math.Log(r.ambientOddsMul)
	}
	return sigmoid(logit)
}

// install samples one install's outcome and when it is reported (hours
// after the install; -1 when it never is).
func (r release) install(w *World, d *Device, h int, rng *rand.Rand) (Outcome, int) {
	o := Succeeded
	extra := 0
	if f := r.failureP(w, d, h); rng.Float64() < f {
		o = InstallFailed
		if rng.Float64() < 0.25 {
			o = DownloadFailed
		}
	} else if rng.Float64() < baseRollback {
		o = RolledBack
	} else if rng.Float64() < baseCrash*r.crashMul {
		o = Crashed
		if r.crashDelay {
			extra = 48 + rng.IntN(72)
		}
	}
	if rng.Float64() < 0.03 {
		return o, -1 // never reported
	}
	return o, extra + telemetryDelay(rng)
}

// otherRelease samples an install of another, good release at hour h: the
// device's own baseline with any ambient incident, nothing of r's effect.
func otherRelease(r release, w *World, d *Device, h int, rng *rand.Rand) (Outcome, int) {
	good := release{class: Good, oddsMul: 1, crashMul: 1, ambient: r.ambient, ambientFrom: r.ambientFrom, ambientTo: r.ambientTo, ambientOddsMul: r.ambientOddsMul}
	return good.install(w, d, h, rng)
}

// telemetryDelay is log-normal: median 6 h, 90th percentile 24 h.
func telemetryDelay(rng *rand.Rand) int {
	sigma := math.Log(24.0/6) / 1.2816
	return int(math.Round(6 * math.Exp(sigma*rng.NormFloat64())))
}

func (r release) String() string {
	switch {
	case r.cohort != nil:
		return fmt.Sprintf("%s (%s=%d, %.1f%% of the fleet, failing %.0f%%)", r.class, r.cohort.attr, r.cohort.value, 100*r.cohortShare, 100*r.cohortFail)
	case r.ambient != nil:
		return fmt.Sprintf("%s (ambient incident on %s=%d, hours %d-%d)", r.class, r.ambient.attr, r.ambient.value, r.ambientFrom, r.ambientTo)
	}
	return string(r.class)
}
