package console

import (
	"fmt"
	"html/template"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/ringmaster/ringmaster/client"
)

// Charts are drawn on the server as inline SVG: no charting script, no
// inline style (the CSP forbids both), colours from the stylesheet by
// class. Each builder is a pure function of the numbers it shows.

// chart is one drawn chart and the sentence that says what it shows
// (also its accessible name).
type chart struct {
	SVG   template.HTML
	Title string
	Empty string // why there is nothing to draw yet, when there is not
}

type charts struct {
	Exposure chart
	Failure  chart
	Waves    []chart // failure, rollback and crash per wave
	Heat     heatmap
}

const (
	padL, padR = 48, 12
	padT, padB = 12, 28
)

// size is a chart's drawing box; a small one is drawn small so its text
// stays readable where three sit side by side.
type size struct{ w, h int }

var (
	wide  = size{640, 220}
	small = size{360, 180}
)

// point is one observation; Low and High, when High > Low, its interval.
type point struct {
	X, Y, Low, High float64
}

type series struct {
	Name   string
	Class  string
	Points []point
	Step   bool
}

// xAxis fixes a chart's x range and ticks; the zero value fits the data
// with five ticks.
type xAxis struct {
	Min, Max float64
	Ticks    []float64
}

// plot draws series on shared axes; xLabel names an x value, yMax bounds
// the y axis (0: from the data), yFmt formats y ticks.
func plot(sz size, title string, ss []series, hline *float64, xa xAxis, xLabel func(float64) string, yMax float64, yFmt func(float64) string) template.HTML {
	chartW, chartH := sz.w, sz.h
	xMin, xMax := math.Inf(1), math.Inf(-1)
	top := yMax
	for _, s := range ss {
		for _, p := range s.Points {
			xMin, xMax = min(xMin, p.X), max(xMax, p.X)
			if yMax == 0 {
				top = max(top, p.Y, p.High)
			}
		}
	}
	if hline != nil && yMax == 0 {
		top = max(top, *hline*1.2)
	}
	if top <= 0 {
		top = 1
	}
	if xa.Max > xa.Min {
		xMin, xMax = xa.Min, xa.Max
	}
	if xMax <= xMin {
		xMin, xMax = xMin-1, xMax+1
	}
	ticks := xa.Ticks
	if ticks == nil {
		for i := 0; i <= 4; i++ {
			ticks = append(ticks, xMin+(xMax-xMin)*float64(i)/4)
		}
	}
	w, h := float64(chartW), float64(chartH)
	sx := func(x float64) float64 { return padL + (x-xMin)/(xMax-xMin)*(w-padL-padR) }
	sy := func(y float64) float64 { return h - padB - min(y/top, 1)*(h-padT-padB) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, template.HTMLEscapeString(title))
	for i := 0; i <= 4; i++ {
		y := top * float64(i) / 4
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`,
			padL, chartW-padR, sy(y), sy(y), padL-4, sy(y)+4, template.HTMLEscapeString(yFmt(y)))
	}
	for _, x := range ticks {
		anchor := "middle"
		switch {
		case sx(x) < padL+30:
			anchor = "start"
		case sx(x) > w-padR-30:
			anchor = "end"
		}
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="%s">%s</text>`, sx(x), chartH-8, anchor, template.HTMLEscapeString(xLabel(x)))
	}
	if hline != nil {
		fmt.Fprintf(&b, `<line class="baseline" x1="%d" x2="%d" y1="%.1f" y2="%.1f"><title>baseline %s</title></line>`,
			padL, chartW-padR, sy(*hline), sy(*hline), template.HTMLEscapeString(yFmt(*hline)))
	}
	for _, s := range ss {
		var path strings.Builder
		for i, p := range s.Points {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			} else if s.Step {
				fmt.Fprintf(&path, "L%.1f,%.1f", sx(p.X), sy(s.Points[i-1].Y))
			}
			fmt.Fprintf(&path, "%s%.1f,%.1f", cmd, sx(p.X), sy(p.Y))
			if p.High > p.Low {
				fmt.Fprintf(&b, `<line class="interval %s" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, s.Class, sx(p.X), sx(p.X), sy(p.Low), sy(p.High))
			}
			fmt.Fprintf(&b, `<circle class="dot %s" cx="%.1f" cy="%.1f" r="3"><title>%s %s: %s</title></circle>`,
				s.Class, sx(p.X), sy(p.Y), template.HTMLEscapeString(s.Name), template.HTMLEscapeString(xLabel(p.X)), template.HTMLEscapeString(yFmt(p.Y)))
		}
		if len(s.Points) > 1 {
			fmt.Fprintf(&b, `<path class="line %s" d="%s"/>`, s.Class, path.String())
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it was escaped above
}

func percent(v float64) string { return trimFloat(v*100) + "%" }

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.2f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}

// wilson is the 95% Wilson score interval of k in n.
func wilson(k, n int64) (low, high float64) {
	if n == 0 {
		return 0, 0
	}
	const z = 1.959964
	p, nf := float64(k)/float64(n), float64(n)
	d := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / d
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / d
	return max(mid-half, 0), min(mid+half, 1)
}

// deploymentCharts draws a deployment's exposure over time (from its
// events), its failure rate hour by hour against the rest of the fleet's
// in the same hours and the baseline, its rates per wave with intervals,
// and the cohort heat map.
func deploymentCharts(d client.Deployment, h client.Health, events []client.Event, now time.Time) charts {
	var c charts
	// Times read as hours and minutes within a day, with the date beyond.
	layout := "15:04"
	if now.Sub(d.CreatedAt) > 20*time.Hour {
		layout = "Jan 2 15:04"
	}
	hourLabel := func(x float64) string { return time.Unix(int64(x), 0).UTC().Format(layout) }

	exp := series{Name: "exposure", Class: "s-exposure", Step: true, Points: []point{{X: float64(d.CreatedAt.Unix())}}}
	for _, e := range events {
		exp.Points = append(exp.Points, point{X: float64(e.At.Unix()), Y: e.Percent})
	}
	end := now
	if !slices.Contains(active, d.State) {
		end = d.UpdatedAt
	}
	exp.Points = append(exp.Points, point{X: float64(end.Unix()), Y: d.Percent})
	c.Exposure = chart{Title: "Exposure over time: the share of the audience offered the update",
		SVG: plot(wide, "Exposure over time", []series{exp}, nil, xAxis{}, hourLabel, 100, func(y float64) string { return trimFloat(y) + "%" })}

	c.Failure.Title = "Failure rate by hour (95% intervals) against every other deployment's in the same hours, and the baseline"
	if len(h.Timeline) == 0 {
		c.Failure.Empty = "No device has reported an install outcome yet."
	} else {
		rel := series{Name: "this release", Class: "s-release"}
		others := series{Name: "other deployments", Class: "s-others"}
		for _, t := range h.Timeline {
			x := float64(t.Hour.Unix() + 1800)
			if t.Installs > 0 {
				lo, hi := wilson(t.Failed, t.Installs)
				rel.Points = append(rel.Points, point{X: x, Y: float64(t.Failed) / float64(t.Installs), Low: lo, High: hi})
			}
			if t.OthersInstalls > 0 {
				others.Points = append(others.Points, point{X: x, Y: float64(t.OthersFailed) / float64(t.OthersInstalls)})
			}
		}
		var base *float64
		if h.Gate != nil {
			base = &h.Gate.Baseline.Failure
		}
		// Hours span from the first one's start to the last one's end.
		first, last := h.Timeline[0].Hour, h.Timeline[len(h.Timeline)-1].Hour.Add(time.Hour)
		c.Failure.SVG = plot(wide, c.Failure.Title, []series{others, rel}, base,
			xAxis{Min: float64(first.Unix()), Max: float64(last.Unix())}, hourLabel, 0, percent)
	}

	for _, m := range []string{"failure", "rollback", "crash"} {
		s := series{Name: m + " rate", Class: "s-release"}
		for _, wv := range h.Health.Waves {
			r := rateOf(wv.Rates, m)
			if r.Of > 0 {
				s.Points = append(s.Points, point{X: float64(wv.Wave + 1), Y: r.Value, Low: r.Low, High: r.High})
			}
		}
		ch := chart{Title: strings.ToUpper(m[:1]) + m[1:] + " rate per wave (95% intervals) against the baseline"}
		if len(s.Points) == 0 {
			ch.Empty = "No wave has reports yet."
		} else {
			var base *float64
			if h.Gate != nil {
				b := map[string]float64{"failure": h.Gate.Baseline.Failure, "rollback": h.Gate.Baseline.Rollback, "crash": h.Gate.Baseline.Crash}[m]
				base = &b
			}
			waves := xAxis{Min: 0.5, Max: float64(len(d.Plan.Waves)) + 0.5}
			for i := range d.Plan.Waves {
				waves.Ticks = append(waves.Ticks, float64(i+1))
			}
			ch.SVG = plot(small, ch.Title, []series{s}, base, waves, func(x float64) string { return "wave " + trimFloat(x) }, 0, percent)
		}
		c.Waves = append(c.Waves, ch)
	}
	c.Heat = newHeatmap(h)
	return c
}

func rateOf(r client.Rates, metric string) client.Rate {
	switch metric {
	case "rollback":
		return r.Rollback
	case "crash":
		return r.Crash
	}
	return r.Failure
}

// heatmap is the cohort cells with the most failures against the
// deployment's overall rates: each square's shade is how many times the
// overall rate the cell's is.
type heatmap struct {
	Metrics []string
	Rows    []heatRow
}

type heatRow struct {
	Cell    string
	Devices int64
	Squares []heatSquare
}

type heatSquare struct {
	Rate  client.Rate
	Ratio float64
	// Level is the shade, 0 (at or below overall) to 5 (5× or more).
	Level int
}

func newHeatmap(h client.Health) heatmap {
	hm := heatmap{Metrics: []string{"failure", "rollback", "crash"}}
	for _, cell := range h.Health.Cells {
		row := heatRow{Cell: cell.Cell}
		for _, n := range cell.Devices {
			row.Devices += n
		}
		for _, m := range hm.Metrics {
			r, all := rateOf(cell.Rates, m), rateOf(h.Health.Overall, m).Value
			sq := heatSquare{Rate: r}
			switch {
			case r.Of == 0:
			case all > 0:
				sq.Ratio = r.Value / all
			case r.Value > 0:
				sq.Ratio = math.Inf(1)
			}
			sq.Level = min(int(math.Max(sq.Ratio-1, 0)*1.25+0.999), 5)
			row.Squares = append(row.Squares, sq)
		}
		hm.Rows = append(hm.Rows, row)
	}
	return hm
}

// versionChart draws a product's devices per installed version as bars.
func versionChart(v client.ProductVersions) chart {
	c := chart{Title: fmt.Sprintf("Devices of %s by installed version", v.Product)}
	if len(v.Versions) == 0 {
		c.Empty = "No registered device reports a version of " + v.Product + "."
		return c
	}
	const rowH, labelW, w = 22, 120, 640
	var most int64
	for _, x := range v.Versions {
		most = max(most, x.Devices)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, rowH*len(v.Versions)+4, template.HTMLEscapeString(c.Title))
	for i, x := range v.Versions {
		y := i*rowH + 2
		bw := float64(w-labelW-90) * float64(x.Devices) / float64(max(most, 1))
		share := float64(x.Devices) / float64(max(v.Devices, 1))
		fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="end">%s</text><rect class="bar" x="%d" y="%d" width="%.1f" height="%d"/>`+
			`<text class="tick" x="%.1f" y="%d">%d (%s)</text>`,
			labelW-6, y+15, template.HTMLEscapeString(x.Version), labelW, y, max(bw, 1), rowH-6, float64(labelW)+max(bw, 1)+6, y+15, x.Devices, percent(share))
	}
	b.WriteString(`</svg>`)
	c.SVG = template.HTML(b.String()) // every text in it was escaped above
	return c
}
