package risk

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringmaster/ringmaster/internal/targeting"
)

// fleet returns devices with three attributes, one of which ("model")
// carries a known effect on failure log-odds, and their outcomes.
func fleet(n int, seed uint64) ([]Example, []map[string]string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	effect := map[string]float64{"m0": 0, "m1": 1.0, "m2": -0.7, "m3": 0.3}
	var ex []Example
	var devs []map[string]string
	for range n {
		a := map[string]string{
			"model":  fmt.Sprintf("m%d", rng.IntN(4)),
			"region": fmt.Sprintf("r%d", rng.IntN(3)),
			"noise":  fmt.Sprintf("n%d", rng.IntN(5000)), // too rare to weigh
		}
		p := 1 / (1 + math.Exp(-(math.Log(0.02/0.98) + effect[a["model"]])))
		ex = append(ex, Example{Attributes: a, Failed: rng.Float64() < p})
		devs = append(devs, a)
	}
	return ex, devs
}

func TestTrainRecoversEffects(t *testing.T) {
	ex, devs := fleet(60000, 1)
	m, err := Train(ex, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Differences between model weights are identified (one-hot with an
	// intercept); compare them with the true ones.
	for _, tc := range []struct {
		a, b string
		want float64
	}{{"model=m1", "model=m0", 1.0}, {"model=m2", "model=m0", -0.7}, {"model=m3", "model=m0", 0.3}} {
		got := m.Weights[tc.a] - m.Weights[tc.b]
		if math.Abs(got-tc.want) > 0.25 {
			t.Errorf("%s - %s = %.2f, want about %.2f", tc.a, tc.b, got, tc.want)
		}
	}
	for f := range m.Weights {
		if len(f) > 6 && f[:6] == "noise=" {
			t.Errorf("rare value %s got a weight", f)
		}
	}
	// Calibration: mean score is the failure rate.
	sum := 0.0
	for _, d := range devs {
		sum += m.Score(d)
	}
	if rate := float64(m.Failures) / float64(m.Examples); math.Abs(sum/float64(len(devs))-rate) > 0.002 {
		t.Errorf("mean score %.4f, observed rate %.4f", sum/float64(len(devs)), rate)
	}
	// Explain: intercept plus contributions is the log-odds.
	e := m.Explain(devs[0])
	z := e.Intercept
	for _, c := range e.Contributions {
		z += c.LogOdds
	}
	if math.Abs(sigmoid(z)-e.Score) > 1e-9 || math.Abs(sigmoid(m.Offset+m.Slope*m.LogOdds(devs[0]))-e.Score) > 1e-9 {
		t.Errorf("explanation does not add up: %v", e)
	}
}

func TestTrainRefusesOneOutcome(t *testing.T) {
	if _, err := Train([]Example{{Attributes: map[string]string{"a": "b"}}}, Options{}); err == nil {
		t.Fatal("trained on examples without a failure")
	}
	if _, err := Train(nil, Options{}); err == nil {
		t.Fatal("trained on nothing")
	}
}

func TestPositionOrdersByRiskWithExploration(t *testing.T) {
	ex, devs := fleet(40000, 2)
	m, err := Train(ex, Options{})
	if err != nil {
		t.Fatal(err)
	}
	scores := make([]float64, len(devs))
	for i, d := range devs {
		scores[i] = m.Score(d)
	}
	m.Calibrate(scores)
	const explore = 0.2
	var firstRisk, allRisk, explorers, firstExplorers, first float64
	for i, d := range devs {
		id := fmt.Sprintf("dev-%d", i)
		pos := m.Position("salt", id, scores[i], explore)
		if pos != m.Position("salt", id, scores[i], explore) || pos >= targeting.Buckets {
			t.Fatalf("position %d not stable or out of range", pos)
		}
		allRisk += scores[i]
		ex := Explorer("salt", id, explore)
		if ex {
			explorers++
			if pos != targeting.Bucket("salt", id) {
				t.Fatalf("an explorer left its hash bucket")
			}
		}
		if targeting.InWave(pos, 10) {
			first++
			firstRisk += scores[i]
			if ex {
				firstExplorers++
			}
		}
		_ = d
	}
	if share := explorers / float64(len(devs)); math.Abs(share-explore) > 0.02 {
		t.Errorf("exploration share %.3f, want %.2f", share, explore)
	}
	// The first 10% holds its share of explorers, and is less risky.
	if share := firstExplorers / first; math.Abs(share-explore) > 0.05 {
		t.Errorf("first 10%%: %.2f explorers, want about %.2f", share, explore)
	}
	if mean, all := firstRisk/first, allRisk/float64(len(devs)); mean > 0.8*all {
		t.Errorf("first 10%% mean risk %.4f, fleet %.4f", mean, all)
	}
	if share := first / float64(len(devs)); share < 0.07 || share > 0.13 {
		t.Errorf("10%% wave holds %.3f of the fleet", share)
	}
}

func TestSolve(t *testing.T) {
	a := []float64{4, 2, 2, 3}
	x, err := solve(a, []float64{2, 1}, 2)
	if err != nil || math.Abs(x[0]-0.5) > 1e-12 || math.Abs(x[1]) > 1e-12 {
		t.Fatalf("x = %v, %v", x, err)
	}
}

// TestTrainSeparable: when an attribute value separates failures almost
// perfectly, the penalty and the recalibration's prior keep the model sane.
func TestTrainSeparable(t *testing.T) {
	var ex []Example
	for i := range 900 {
		model := []string{"m0", "m1", "m2"}[i%3]
		ex = append(ex, Example{Attributes: map[string]string{"model": model}, Failed: model == "m2" && i%5 == 0 || model != "m2" && i%100 == 1})
	}
	m, err := Train(ex, Options{})
	if err != nil {
		t.Fatal(err)
	}
	risky, safe := m.Score(map[string]string{"model": "m2"}), m.Score(map[string]string{"model": "m0"})
	if m.Slope <= 0 || m.Slope > 3 || risky < 0.1 || risky > 0.3 || safe > 0.05 {
		t.Fatalf("slope %.2f, offset %.2f: m2 %.3f, m0 %.3f", m.Slope, m.Offset, risky, safe)
	}
}

// BenchmarkPosition is the check-in path's extra cost in a risk-ordered
// deployment: a device's score and its position.
func BenchmarkPosition(b *testing.B) {
	ex, devs := fleet(20000, 4)
	m, err := Train(ex, Options{})
	if err != nil {
		b.Fatal(err)
	}
	scores := make([]float64, len(devs))
	for i, d := range devs {
		scores[i] = m.Score(d)
	}
	m.Calibrate(scores)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d := devs[i%len(devs)]
		_ = m.Position("salt", "dev-1234", m.Score(d), 0.2)
	}
}

// BenchmarkTrain: cross-validated training on 100,000 installs with three
// attributes (the server trains on at most 100,000).
func BenchmarkTrain(b *testing.B) {
	ex, _ := fleet(100000, 5)
	for b.Loop() {
		if _, err := Train(ex, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
