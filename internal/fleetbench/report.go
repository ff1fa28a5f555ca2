package fleetbench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ringmaster/ringmaster/internal/targeting"
)

// Config is one benchmark run.
type Config struct {
	Devices int     `json:"devices"`
	Worlds  int     `json:"worlds"`
	Seed    uint64  `json:"seed"`
	Classes []Class `json:"classes"`
	// Policies limits the run to these policies (default: all).
	Policies []string `json:"policies,omitempty"`
}

// Summary aggregates one policy on one class over the worlds.
type Summary struct {
	Policy string `json:"policy"`
	Class  Class  `json:"class"`
	Runs   int    `json:"runs"`
	// Halts: share of worlds halted (false halts for good classes).
	HaltRate float64 `json:"halt_rate"`
	// Exposed at halt or hold (for bad classes: the blast radius).
	MeanExposedAtDetection float64 `json:"mean_exposed_at_detection"`
	P95ExposedAtDetection  float64 `json:"p95_exposed_at_detection"`
	MeanCohortExposed      float64 `json:"mean_cohort_exposed_at_detection"`
	MeanExcessFailures     float64 `json:"mean_excess_failures"`
	// MeanEarlyFailures: expected failures among the first 10% of the
	// fleet to install (good classes: what risk ordering spares).
	MeanEarlyFailures      float64 `json:"mean_early_failures"`
	HoldRate               float64 `json:"hold_rate"`
	FalseHolds             int     `json:"false_holds"`
	WronglyHeldDeviceDays  float64 `json:"wrongly_held_device_days"`
	MedianHoursToDetection float64 `json:"median_hours_to_detection"`
	// Hours to offer 100% of the fleet (good classes; -1 when not reached
	// in half the worlds).
	MedianHoursTo100 float64 `json:"median_hours_to_100"`
	P95HoursTo100    float64 `json:"p95_hours_to_100"`
	ComputeSeconds   float64 `json:"compute_seconds"`
}

// Report is a benchmark's outcome.
type Report struct {
	Config    Config    `json:"config"`
	Summaries []Summary `json:"summaries"`
	Results   []Result  `json:"results"`
	Elapsed   float64   `json:"elapsed_seconds"`
}

// Bench runs every policy on every class in cfg.Worlds seeded worlds.
func Bench(cfg Config, progress func(string)) (*Report, error) {
	env, err := targeting.NewEnv()
	if err != nil {
		return nil, err
	}
	if len(cfg.Classes) == 0 {
		cfg.Classes = Classes
	}
	start := time.Now()
	rep := &Report{Config: cfg}
	say := func(format string, args ...any) {
		if progress != nil {
			progress(fmt.Sprintf("[%5.0fs] ", time.Since(start).Seconds()) + fmt.Sprintf(format, args...))
		}
	}
	for k := 0; k < cfg.Worlds; k++ {
		seed := cfg.Seed + uint64(k)
		say("world %d of %d: building %d devices", k+1, cfg.Worlds, cfg.Devices)
		w := NewWorld(cfg.Devices, baseFailure, seed)
		for i, c := range cfg.Classes {
			say("world %d of %d: class %d of %d (%s)", k+1, cfg.Worlds, i+1, len(cfg.Classes), c)
			for _, p := range Policies(cfg.Devices) {
				if len(cfg.Policies) == 0 || slices.Contains(cfg.Policies, p.Name()) {
					rep.Results = append(rep.Results, Run(w, seed, c, p, env))
				}
			}
		}
	}
	rep.Summaries = summarize(rep.Results)
	rep.Elapsed = time.Since(start).Seconds()
	return rep, nil
}

func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[min(len(s)-1, max(0, int(math.Ceil(q*float64(len(s))))-1))]
}

func summarize(rs []Result) []Summary {
	type key struct {
		p string
		c Class
	}
	groups := map[key][]Result{}
	var order []key
	for _, r := range rs {
		k := key{r.Policy, r.Class}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	var out []Summary
	for _, k := range order {
		g := groups[k]
		s := Summary{Policy: k.p, Class: k.c, Runs: len(g)}
		var det, to100, hours []float64
		reached := 0
		for _, r := range g {
			if r.Halted {
				s.HaltRate++
			}
			if r.HoldHour >= 0 {
				s.HoldRate++
			}
			det = append(det, float64(r.ExposedAtDetection))
			s.MeanCohortExposed += float64(r.CohortExposedAtDetection)
			s.MeanExcessFailures += r.ExcessFailures
			s.MeanEarlyFailures += r.EarlyFailures
			s.FalseHolds += r.FalseHolds
			s.WronglyHeldDeviceDays += r.WronglyHeldDeviceDays
			s.ComputeSeconds += r.ComputeSeconds
			if r.To100 >= 0 {
				reached++
				to100 = append(to100, float64(r.To100))
			} else {
				to100 = append(to100, math.Inf(1))
			}
			if at := firstOf(r.HaltHour, r.HoldHour); at >= 0 {
				hours = append(hours, float64(at))
			}
		}
		n := float64(len(g))
		s.HaltRate /= n
		s.HoldRate /= n
		s.MeanCohortExposed /= n
		s.MeanExcessFailures /= n
		s.MeanEarlyFailures /= n
		for _, d := range det {
			s.MeanExposedAtDetection += d / n
		}
		s.P95ExposedAtDetection = quantile(det, 0.95)
		s.MedianHoursTo100, s.P95HoursTo100 = quantile(to100, 0.5), quantile(to100, 0.95)
		for _, p := range []*float64{&s.MedianHoursTo100, &s.P95HoursTo100} {
			if math.IsInf(*p, 1) {
				*p = -1
			}
		}
		s.MedianHoursToDetection = -1
		if len(hours) > 0 {
			s.MedianHoursToDetection = quantile(hours, 0.5)
		}
		out = append(out, s)
	}
	return out
}

func firstOf(a, b int) int {
	switch {
	case a < 0:
		return b
	case b < 0:
		return a
	}
	return min(a, b)
}

// Find returns the summary of a policy on a class.
func (r *Report) Find(policy string, c Class) (Summary, bool) {
	for _, s := range r.Summaries {
		if s.Policy == policy && s.Class == c {
			return s, true
		}
	}
	return Summary{}, false
}

// WriteTable prints the summaries, one block per class, in at most 120
// columns: a bad class shows what it cost before it was caught, a good one
// what the gate cost it (every figure of both is in the JSON report).
func (r *Report) WriteTable(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "fleetbench: %d devices, %d worlds from seed %d, %d-day horizon, %.1fs\n", r.Config.Devices, r.Config.Worlds,
		r.Config.Seed, Horizon/24, r.Elapsed)
	fmt.Fprintln(tw, "means over worlds; exposed = devices offered the release; hours are medians (p95 beside)")
	class := Class("")
	for _, s := range r.Summaries {
		if s.Class != class {
			class = s.Class
			if class.Bad() {
				fmt.Fprintf(tw, "\n%s (bad: exposure is harm)\n", class)
				fmt.Fprintln(tw, "policy\thalted\texposed at detect\tp95\tcohort exposed\texcess fails\tfails in 1st 10%\theld\th to detect\t")
			} else {
				fmt.Fprintf(tw, "\n%s (good: halts are false halts)\n", class)
				fmt.Fprintln(tw, "policy\thalted\theld\tfalse holds\twrongly held device-days\th to 100%\tp95\t")
			}
		}
		if class.Bad() {
			fmt.Fprintf(tw, "%s\t%.0f%%\t%.0f\t%.0f\t%.0f\t%.1f\t%.1f\t%.0f%%\t%s\t\n", s.Policy, 100*s.HaltRate, s.MeanExposedAtDetection,
				s.P95ExposedAtDetection, s.MeanCohortExposed, s.MeanExcessFailures, s.MeanEarlyFailures, 100*s.HoldRate, hours(s.MedianHoursToDetection))
		} else {
			fmt.Fprintf(tw, "%s\t%.0f%%\t%.0f%%\t%d\t%.0f\t%s\t%s\t\n", s.Policy, 100*s.HaltRate, 100*s.HoldRate, s.FalseHolds,
				s.WronglyHeldDeviceDays, hours(s.MedianHoursTo100), hours(s.P95HoursTo100))
		}
	}
	return tw.Flush()
}

func hours(h float64) string {
	if h < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", h)
}

// WriteSVG plots speed against harm per policy: x is the median hours to
// offer a good release to everyone, y the mean excess failures over the
// bad classes.
func (r *Report) WriteSVG(out io.Writer) error {
	type pt struct {
		name string
		x, y float64
	}
	byPolicy := map[string]*pt{}
	var names []string
	counts := map[string]int{}
	for _, s := range r.Summaries {
		p := byPolicy[s.Policy]
		if p == nil {
			p = &pt{name: s.Policy, x: -1}
			byPolicy[s.Policy] = p
			names = append(names, s.Policy)
		}
		switch {
		case s.Class == Good:
			p.x = s.MedianHoursTo100
		case s.Class.Bad():
			p.y += s.MeanExcessFailures
			counts[s.Policy]++
		}
	}
	var maxX, maxY float64 = 1, 1
	for _, p := range byPolicy {
		if counts[p.name] > 0 {
			p.y /= float64(counts[p.name])
		}
		if p.x < 0 {
			p.x = Horizon // never reached: drawn at the horizon
		}
		maxX, maxY = math.Max(maxX, p.x), math.Max(maxY, p.y)
	}
	const W, H, m = 720, 480, 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">fleetbench: speed vs harm (%d devices, %d worlds)</text>`+"\n", m, r.Config.Devices, r.Config.Worlds)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n",
		m, H-m, W-m, H-m, m, m, m, H-m)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">median hours to offer a good release to 100%% (max %.0f)</text>`+"\n", W/2, H-20, maxX)
	fmt.Fprintf(&b, `<text x="15" y="%d" transform="rotate(-90 15 %d)" text-anchor="middle">mean excess failures on bad releases (max %.0f)</text>`+"\n", H/2, H/2, maxY)
	for _, n := range names {
		p := byPolicy[n]
		x := m + (W-2*m)*p.x/maxX
		y := float64(H-m) - float64(H-2*m)*p.y/maxY
		color := "#555"
		if n == "ringmaster" {
			color = "#c00"
		}
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="5" fill="%s"/><text x="%.1f" y="%.1f" fill="%s">%s</text>`+"\n", x, y, color, x+7, y-7, color, n)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(out, b.String())
	return err
}
