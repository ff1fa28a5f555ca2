// Package health judges releases from what devices report: rates with
// confidence intervals, and always-valid sequential gates against a
// baseline. It is pure: no storage, no transport.
package health

import (
	"math"
	"sort"

	"github.com/ringmaster/ringmaster/internal/telemetry"
)

// PredictedRisk is the pseudo-outcome under which health counts sum, in
// millionths, the predicted failure risk of the devices of a risk-ordered
// deployment that finished installing (the gate compares their mean with
// the population's). Reports leave it out.
const PredictedRisk telemetry.Type = "predicted_risk_ppm"

// Count is the number of devices with an outcome in a wave and cell.
type Count struct {
	Wave    int
	Outcome telemetry.Type
	Cell    string
	Devices int64
}

// Rate is a proportion with its Wilson 95% interval.
type Rate struct {
	Events int64   `json:"events"`
	Of     int64   `json:"of"`
	Value  float64 `json:"value"`
	Low    float64 `json:"low"`
	High   float64 `json:"high"`
}

// NewRate returns k/n with its Wilson score interval at 95%.
func NewRate(k, n int64) Rate {
	r := Rate{Events: k, Of: n}
	if n <= 0 {
		r.High = 1
		return r
	}
	r.Value, r.Low, r.High = wilson(float64(k)/float64(n), float64(n))
	return r
}

// wilson is the Wilson score interval at 95% of a rate p measured on n
// (possibly effective, so fractional) trials.
func wilson(p, n float64) (value, low, high float64) {
	const z = 1.959963984540054
	den := 1 + z*z/n
	mid := (p + z*z/(2*n)) / den
	half := z * math.Sqrt(p*(1-p)/n+z*z/(4*n*n)) / den
	return p, math.Max(0, mid-half), math.Min(1, mid+half)
}

// Rates are a population's outcome rates. Install outcomes are out of the
// devices that finished installing (succeeded or failed); rollbacks and
// crashes out of those that succeeded.
type Rates struct {
	Devices  map[telemetry.Type]int64 `json:"devices"`
	Failure  Rate                     `json:"failure"`
	Rollback Rate                     `json:"rollback"`
	Crash    Rate                     `json:"crash"`
}

func rates(devices map[telemetry.Type]int64) Rates {
	ok := devices[telemetry.InstallSucceeded]
	failed := devices[telemetry.InstallFailed] + devices[telemetry.DownloadFailed]
	return Rates{Devices: devices, Failure: NewRate(failed, ok+failed),
		Rollback: NewRate(devices[telemetry.RolledBack], ok), Crash: NewRate(devices[telemetry.PostInstallCrash], ok)}
}

// WaveHealth is one wave's rates.
type WaveHealth struct {
	Wave int `json:"wave"`
	Rates
}

// CellHealth is one cohort cell's rates over the whole deployment.
type CellHealth struct {
	Cell string `json:"cell"`
	Rates
}

// Report is a deployment's health.
type Report struct {
	Overall Rates        `json:"overall"`
	Waves   []WaveHealth `json:"waves"`
	// Cells are the cohort cells with the most failures, worst first.
	Cells []CellHealth `json:"cells"`
}

// Summarize builds a report from counts, listing at most maxCells cells.
func Summarize(counts []Count, maxCells int) Report {
	overall := map[telemetry.Type]int64{}
	waves := map[int]map[telemetry.Type]int64{}
	cells := map[string]map[telemetry.Type]int64{}
	for _, c := range counts {
		if c.Outcome == PredictedRisk {
			continue
		}
		if c.Cell == "" {
			overall[c.Outcome] += c.Devices
			if waves[c.Wave] == nil {
				waves[c.Wave] = map[telemetry.Type]int64{}
			}
			waves[c.Wave][c.Outcome] += c.Devices
			continue
		}
		if cells[c.Cell] == nil {
			cells[c.Cell] = map[telemetry.Type]int64{}
		}
		cells[c.Cell][c.Outcome] += c.Devices
	}
	r := Report{Overall: rates(overall), Waves: []WaveHealth{}, Cells: []CellHealth{}}
	for w, d := range waves {
		r.Waves = append(r.Waves, WaveHealth{Wave: w, Rates: rates(d)})
	}
	sort.Slice(r.Waves, func(i, j int) bool { return r.Waves[i].Wave < r.Waves[j].Wave })
	for c, d := range cells {
		r.Cells = append(r.Cells, CellHealth{Cell: c, Rates: rates(d)})
	}
	sort.Slice(r.Cells, func(i, j int) bool {
		a, b := r.Cells[i].Failure, r.Cells[j].Failure
		if a.Events != b.Events {
			return a.Events > b.Events
		}
		return r.Cells[i].Cell < r.Cells[j].Cell
	})
	if len(r.Cells) > maxCells {
		r.Cells = r.Cells[:maxCells]
	}
	return r
}
