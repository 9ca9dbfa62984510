package bench

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot size.
const (
	plotWidth  = 9 * vg.Inch
	plotHeight = 10 * vg.Inch
)

// WritePlot draws r as a PNG image with three panels: the latency
// distribution (latency by percentile, HDR style), throughput per second
// (events published, pairs delivered) and latency per second (p50, p99).
// It needs the Result of Run, which carries the histogram.
func WritePlot(w io.Writer, r *Result) error {
	if r.hist == nil || r.hist.Count() == 0 {
		return errors.New("bench: nothing to plot: no latency samples")
	}
	dist, err := distributionPlot(r)
	if err != nil {
		return err
	}
	thr, err := throughputPlot(r)
	if err != nil {
		return err
	}
	lat, err := latencyPlot(r)
	if err != nil {
		return err
	}
	img := vgimg.New(plotWidth, plotHeight)
	dc := draw.New(img)
	plots := [][]*plot.Plot{{dist}, {thr}, {lat}}
	tiles := draw.Tiles{Rows: 3, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for j := range plots {
		plots[j][0].Draw(canvases[j][0])
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(w); err != nil {
		return fmt.Errorf("bench: writing plot: %w", err)
	}
	return nil
}

var (
	colorA = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colorB = color.RGBA{R: 214, G: 39, B: 40, A: 255}
)

// nines maps a quantile to the HDR percentile axis: 0.9 → 1, 0.99 → 2, …
func nines(q float64) float64 { return -math.Log10(1 - q) }

func distributionPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	rate := "max"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", r.Rate)
	}
	p.Title.Text = fmt.Sprintf("streamer bench — %s, %d node(s), %d×%d subs, rate %s: %.0f events/s, %.0f deliveries/s, lost %d (load avg %.1f)",
		r.Mode, r.Nodes, r.Gateways, r.SubsPerGateway, rate, r.EventsPerSec, r.DeliveriesPerSec, r.Lost, r.LoadAvgStart[0])
	p.Title.TextStyle.Font.Size = vg.Points(9)
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "publish → gateway latency (ms, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Add(plotter.NewGrid())

	curve := r.hist.curve()
	top := nines(1 - 1/float64(r.hist.Count())) // the last sample's position
	pts := make(plotter.XYs, 0, len(curve))
	for _, c := range curve {
		x := top
		if c.q < 1 {
			x = nines(c.q)
		}
		pts = append(pts, plotter.XY{X: x, Y: max(ms(c.value), 1e-3)})
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return nil, err
	}
	line.Color = colorA
	p.Add(line)
	var ticks []plot.Tick
	for i, label := range []string{"0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"} {
		if float64(i) <= math.Ceil(top) {
			ticks = append(ticks, plot.Tick{Value: float64(i), Label: label})
		}
	}
	ticks = append(ticks, plot.Tick{Value: nines(0.5), Label: "50%"})
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = 0, math.Max(top, 1)
	return p, nil
}

func throughputPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "seconds into the measured phase"
	p.Y.Label.Text = "per second"
	p.Add(plotter.NewGrid())
	var pub, del plotter.XYs
	for _, s := range fullSeconds(r) {
		pub = append(pub, plotter.XY{X: float64(s.T), Y: float64(s.Published)})
		del = append(del, plotter.XY{X: float64(s.T), Y: float64(s.Deliveries)})
	}
	if err := addLines(p, "events published", pub, colorA, "deliveries (event × subscription)", del, colorB); err != nil {
		return nil, err
	}
	return p, nil
}

func latencyPlot(r *Result) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "seconds into the measured phase"
	p.Y.Label.Text = "latency (ms)"
	p.Add(plotter.NewGrid())
	var p50, p99 plotter.XYs
	for _, s := range fullSeconds(r) {
		p50 = append(p50, plotter.XY{X: float64(s.T), Y: s.P50Ms})
		p99 = append(p99, plotter.XY{X: float64(s.T), Y: s.P99Ms})
	}
	if err := addLines(p, "p50", p50, colorA, "p99", p99, colorB); err != nil {
		return nil, err
	}
	return p, nil
}

// fullSeconds returns the seconds of the timeline that the measured phase
// covered entirely (the last one is usually cut short by its end).
func fullSeconds(r *Result) []Second {
	span := r.DurationSec + r.DrainMs/1000
	out := r.Timeline
	for len(out) > 0 && float64(out[len(out)-1].T+1) > span {
		out = out[:len(out)-1]
	}
	return out
}

// addLines adds two named lines (skipped when empty) and their legend, at
// the top, above the data: the y axis starts at 0 and leaves room for it.
func addLines(p *plot.Plot, nameA string, a plotter.XYs, ca color.Color, nameB string, b plotter.XYs, cb color.Color) error {
	for _, l := range []struct {
		name string
		xys  plotter.XYs
		c    color.Color
	}{{nameA, a, ca}, {nameB, b, cb}} {
		if len(l.xys) == 0 {
			continue
		}
		line, err := plotter.NewLine(l.xys)
		if err != nil {
			return err
		}
		line.Color = l.c
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(l.name, line)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Y.Min = 0
	p.Y.Max *= 1.3
	return nil
}
