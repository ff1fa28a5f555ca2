// Package risk predicts how likely a device is to fail an update, from
// the attributes it reports, and orders risk-ordered rollouts by it. The
// model is L2-regularized logistic regression over one-hot attribute
// values, trained by Newton's method on past deployments' outcomes: every
// prediction is a sum of per-value weights a person can read. It is pure:
// no storage, no transport.
package risk

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/ringmaster/ringmaster/internal/targeting"
)

// Example is one past install: the device's attributes and whether it
// failed.
type Example struct {
	Attributes map[string]string
	Failed     bool
}

// Options tune training (zero values take defaults).
type Options struct {
	// Lambda is the L2 penalty on weights (0: chosen by cross-validation).
	Lambda float64
	// MinCount: attribute values seen fewer times get no weight of their
	// own (too little evidence; they also keep the model small).
	MinCount int
	// MaxFeatures caps the number of weights (most frequent values first).
	MaxFeatures int
	// Iterations of Newton's method.
	Iterations int
}

// DefaultOptions are used for zero fields (Lambda 0: cross-validated).
var DefaultOptions = Options{MinCount: 30, MaxFeatures: 2000, Iterations: 12}

// Model is a trained risk model.
type Model struct {
	// Intercept is the log-odds of failure of a device with no weighted
	// attribute value.
	Intercept float64 `json:"intercept"`
	// Weights are log-odds contributions per "attribute=value".
	Weights map[string]float64 `json:"weights"`
	// Offset and Slope recalibrate the log-odds (score = sigmoid(Offset +
	// Slope × (Intercept + Σ weights))), fitted on held-out predictions.
	Offset float64 `json:"offset"`
	Slope  float64 `json:"slope"`
	// Lambda is the L2 penalty cross-validation chose.
	Lambda float64 `json:"lambda"`
	// Examples and Failures it was trained on.
	Examples int64 `json:"examples"`
	Failures int64 `json:"failures"`
	// Quantiles are the population's scores at 0, 1/(n-1), …, 1, which
	// turn a score into a position in the rollout order; Mean is the
	// population's mean score (the risk a fleet-wide baseline reflects).
	Quantiles []float64 `json:"quantiles,omitempty"`
	Mean      float64   `json:"population_mean,omitempty"`
	// Population is how many devices calibrated the quantiles.
	Population int `json:"population,omitempty"`
}

// feature names an attribute value.
func feature(attr, value string) string { return attr + "=" + value }

// Train fits a model to examples. Unless o.Lambda is set, the penalty is
// chosen by 3-fold cross-validation (held-out log loss) from a grid, and
// the model is recalibrated on its out-of-fold predictions (Platt: a slope
// and offset on the log-odds), so the scores it gives devices it picks as
// least risky are not optimistic from overfitting.
func Train(examples []Example, o Options) (*Model, error) {
	if o.Lambda > 0 {
		return fit(examples, o)
	}
	const folds = 3
	fold := func(i int) int { return i % folds }
	best, bestLoss := 0.0, math.Inf(1)
	var bestZ []float64
	for _, lambda := range []float64{3, 10, 30, 100, 300} {
		o.Lambda = lambda
		z := make([]float64, len(examples)) // out-of-fold log-odds
		for f := range folds {
			var train []Example
			for i, e := range examples {
				if fold(i) != f {
					train = append(train, e)
				}
			}
			m, err := fit(train, o)
			if err != nil {
				return nil, err
			}
			for i, e := range examples {
				if fold(i) == f {
					z[i] = m.LogOdds(e.Attributes)
				}
			}
		}
		loss := 0.0
		for i, e := range examples {
			p := sigmoid(z[i])
			if e.Failed {
				loss -= math.Log(p)
			} else {
				loss -= math.Log(1 - p)
			}
		}
		if loss < bestLoss {
			best, bestLoss, bestZ = lambda, loss, z
		}
	}
	o.Lambda = best
	m, err := fit(examples, o)
	if err != nil {
		return nil, err
	}
	m.Lambda = best
	m.Offset, m.Slope = platt(examples, bestZ)
	return m, nil
}

// platt fits failure ~ sigmoid(a + b·z) on out-of-fold log-odds z by
// damped Newton steps, with a weak prior (a near 0, b near 1) so a small or
// separable sample cannot send it off; it falls back to no recalibration
// when the fit is not sane.
func platt(examples []Example, z []float64) (a, b float64) {
	b = 1
	for range 50 {
		g := [2]float64{-a, -(b - 1)} // the prior's pull
		h := [4]float64{1, 0, 0, 1}
		for i, e := range examples {
			p := sigmoid(a + b*z[i])
			y := 0.0
			if e.Failed {
				y = 1
			}
			w := p * (1 - p)
			g[0] += y - p
			g[1] += (y - p) * z[i]
			h[0] += w
			h[1] += w * z[i]
			h[3] += w * z[i] * z[i]
		}
		h[2] = h[1]
		step, err := solve(h[:], g[:], 2)
		if err != nil {
			return 0, 1
		}
		if norm := math.Hypot(step[0], step[1]); norm > 1 {
			step[0], step[1] = step[0]/norm, step[1]/norm
		}
		a, b = a+step[0], b+step[1]
		if math.Abs(step[0])+math.Abs(step[1]) < 1e-9 {
			break
		}
	}
	if math.IsNaN(a) || math.IsNaN(b) || b <= 0 || b > 3 || math.Abs(a) > 10 {
		return 0, 1
	}
	return a, b
}

// fit fits a model with o's penalty.
func fit(examples []Example, o Options) (*Model, error) {
	o = withDefaults(o)
	if len(examples) == 0 {
		return nil, errors.New("no examples to train on")
	}
	counts := map[string]int{}
	var failures int64
	for _, e := range examples {
		for k, v := range e.Attributes {
			counts[feature(k, v)]++
		}
		if e.Failed {
			failures++
		}
	}
	if failures == 0 || failures == int64(len(examples)) {
		return nil, fmt.Errorf("%d examples with %d failures: need both outcomes", len(examples), failures)
	}
	var names []string
	for f, n := range counts {
		if n >= o.MinCount {
			names = append(names, f)
		}
	}
	sort.Slice(names, func(a, b int) bool {
		if counts[names[a]] != counts[names[b]] {
			return counts[names[a]] > counts[names[b]]
		}
		return names[a] < names[b]
	})
	names = names[:min(len(names), o.MaxFeatures)]
	index := make(map[string]int, len(names))
	for i, f := range names {
		index[f] = i + 1 // 0 is the intercept
	}
	// Each example as its active feature indices.
	rows := make([][]int32, len(examples))
	ys := make([]float64, len(examples))
	for i, e := range examples {
		row := []int32{0}
		for k, v := range e.Attributes {
			if j, ok := index[feature(k, v)]; ok {
				row = append(row, int32(j))
			}
		}
		rows[i] = row
		if e.Failed {
			ys[i] = 1
		}
	}
	d := len(names) + 1
	beta := make([]float64, d)
	rate := float64(failures) / float64(len(examples))
	beta[0] = math.Log(rate / (1 - rate))
	hess := make([]float64, d*d)
	grad := make([]float64, d)
	for range o.Iterations {
		clear(hess)
		clear(grad)
		for i, row := range rows {
			z := 0.0
			for _, j := range row {
				z += beta[j]
			}
			p := sigmoid(z)
			w := p * (1 - p)
			for _, a := range row {
				grad[a] += ys[i] - p
				for _, b := range row {
					hess[int(a)*d+int(b)] += w
				}
			}
		}
		for j := 1; j < d; j++ { // the penalty spares the intercept
			grad[j] -= o.Lambda * beta[j]
			hess[j*d+j] += o.Lambda
		}
		hess[0] += 1e-9
		step, err := solve(hess, grad, d)
		if err != nil {
			return nil, err
		}
		change := 0.0
		for j := range beta {
			beta[j] += step[j]
			change = math.Max(change, math.Abs(step[j]))
		}
		if change < 1e-6 {
			break
		}
	}
	m := &Model{Intercept: beta[0], Weights: make(map[string]float64, len(names)), Examples: int64(len(examples)), Failures: failures,
		Slope: 1, Lambda: o.Lambda}
	for i, f := range names {
		m.Weights[f] = beta[i+1]
	}
	return m, nil
}

func withDefaults(o Options) Options {
	if o.MinCount <= 0 {
		o.MinCount = DefaultOptions.MinCount
	}
	if o.MaxFeatures <= 0 {
		o.MaxFeatures = DefaultOptions.MaxFeatures
	}
	if o.Iterations <= 0 {
		o.Iterations = DefaultOptions.Iterations
	}
	return o
}

// solve solves the symmetric positive definite system a·x = b (a is d×d,
// row-major, overwritten) by Cholesky decomposition.
func solve(a, b []float64, d int) ([]float64, error) {
	for j := range d {
		s := a[j*d+j]
		for k := range j {
			s -= a[j*d+k] * a[j*d+k]
		}
		if s <= 0 {
			return nil, errors.New("risk: the training problem is not positive definite")
		}
		a[j*d+j] = math.Sqrt(s)
		for i := j + 1; i < d; i++ {
			s := a[i*d+j]
			for k := range j {
				s -= a[i*d+k] * a[j*d+k]
			}
			a[i*d+j] = s / a[j*d+j]
		}
	}
	x := slices.Clone(b)
	for i := range d { // L y = b
		for k := range i {
			x[i] -= a[i*d+k] * x[k]
		}
		x[i] /= a[i*d+i]
	}
	for i := d - 1; i >= 0; i-- { // Lᵀ x = y
		for k := i + 1; k < d; k++ {
			x[i] -= a[k*d+i] * x[k]
		}
		x[i] /= a[i*d+i]
	}
	return x, nil
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// LogOdds is a device's log-odds of failure before recalibration: the
// intercept plus its attribute values' weights.
func (m *Model) LogOdds(attrs map[string]string) float64 {
	z := m.Intercept
	for k, v := range attrs {
		z += m.Weights[feature(k, v)]
	}
	return z
}

// Score is a device's predicted (recalibrated) probability of failure.
func (m *Model) Score(attrs map[string]string) float64 {
	return sigmoid(m.Offset + m.Slope*m.LogOdds(attrs))
}

// Contribution is one attribute value's share of a device's score.
type Contribution struct {
	Feature string `json:"feature"`
	// LogOdds added to the intercept; OddsRatio is its exponential.
	LogOdds   float64 `json:"log_odds"`
	OddsRatio float64 `json:"odds_ratio"`
}

// Explanation is a device's score and why: the score is the sigmoid of
// the intercept plus every contribution (recalibration included).
type Explanation struct {
	Score     float64 `json:"score"`
	Intercept float64 `json:"intercept"`
	// Quantile is the device's place in the population (0: least risky).
	Quantile      float64        `json:"quantile"`
	Contributions []Contribution `json:"contributions"`
}

// Explain returns a device's score and each weighted attribute value's
// contribution, largest effect first.
func (m *Model) Explain(attrs map[string]string) Explanation {
	e := Explanation{Score: m.Score(attrs), Intercept: m.Offset + m.Slope*m.Intercept, Quantile: m.Quantile(m.Score(attrs))}
	for k, v := range attrs {
		if w, ok := m.Weights[feature(k, v)]; ok {
			w *= m.Slope
			e.Contributions = append(e.Contributions, Contribution{Feature: feature(k, v), LogOdds: w, OddsRatio: math.Exp(w)})
		}
	}
	sort.Slice(e.Contributions, func(a, b int) bool {
		ca, cb := e.Contributions[a], e.Contributions[b]
		if math.Abs(ca.LogOdds) != math.Abs(cb.LogOdds) {
			return math.Abs(ca.LogOdds) > math.Abs(cb.LogOdds)
		}
		return ca.Feature < cb.Feature
	})
	return e
}

// Calibrate records the population's score quantiles (from a sample of
// its devices' scores), which Position needs.
func (m *Model) Calibrate(scores []float64) {
	if len(scores) == 0 {
		m.Quantiles = nil
		return
	}
	s := slices.Clone(scores)
	slices.Sort(s)
	m.Mean, m.Population = 0, len(s)
	for _, x := range s {
		m.Mean += x / float64(len(s))
	}
	const n = 1001
	m.Quantiles = make([]float64, n)
	for i := range n {
		m.Quantiles[i] = s[i*(len(s)-1)/(n-1)]
	}
}

// quantileRange is the range of population shares a device with this
// score spans (wide when many devices share the score).
func (m *Model) quantileRange(score float64) (lo, hi float64) {
	q := m.Quantiles
	if len(q) < 2 {
		return 0, 1
	}
	last := float64(len(q) - 1)
	a := sort.SearchFloat64s(q, score) // first ≥ score
	b := sort.Search(len(q), func(i int) bool { return q[i] > score })
	return float64(max(a-1, 0)) / last, float64(min(b, len(q)-1)) / last
}

// Quantile is a score's place in the population (0: least risky, 1: most).
func (m *Model) Quantile(score float64) float64 {
	lo, hi := m.quantileRange(score)
	return (lo + hi) / 2
}

// Position places a device in a risk-ordered rollout, in the same
// [0, targeting.Buckets) space as targeting.Bucket, so a wave at p percent
// exposes the devices below targeting.Threshold(p). Devices in the
// exploration share (chosen by a second hash) keep their hash bucket, so
// every wave exposes a uniform sample of them and the health gates see the
// whole population; the rest are placed by their score's quantile, least
// risky first, ties spread by their hash bucket. Deterministic, and
// monotonic: raising a percentage only adds devices.
func (m *Model) Position(salt, deviceID string, score, explore float64) uint32 {
	b := targeting.Bucket(salt, deviceID)
	if Explorer(salt, deviceID, explore) || len(m.Quantiles) < 2 {
		return b
	}
	lo, hi := m.quantileRange(score)
	pos := (lo + (hi-lo)*float64(b)/targeting.Buckets) * targeting.Buckets
	return min(uint32(pos), targeting.Buckets-1)
}

// Explorer reports whether a device is in a risk-ordered rollout's
// exploration share.
func Explorer(salt, deviceID string, explore float64) bool {
	return targeting.Bucket(salt+"\x00explore", deviceID) < targeting.Threshold(100*explore)
}

// Top lists the largest weights, for people reading a model.
func (m *Model) Top(n int) []Contribution {
	out := make([]Contribution, 0, len(m.Weights))
	for f, w := range m.Weights {
		out = append(out, Contribution{Feature: f, LogOdds: w, OddsRatio: math.Exp(w)})
	}
	sort.Slice(out, func(a, b int) bool {
		if math.Abs(out[a].LogOdds) != math.Abs(out[b].LogOdds) {
			return math.Abs(out[a].LogOdds) > math.Abs(out[b].LogOdds)
		}
		return strings.Compare(out[a].Feature, out[b].Feature) < 0
	})
	return out[:min(n, len(out))]
}
