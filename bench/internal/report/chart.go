package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoData is returned by Chart when no panel has a value.
var ErrNoData = errors.New("report: nothing to chart")

// Panel is one bar chart of the PNG: for each of Rows, one bar per column.
type Panel struct {
	Title string
	YUnit string
	Rows  []string // row keys; each is a cluster of bars
	Names []string // cluster names, one per row key
}

// Chart runs gnuplot (script and data in a temporary directory) to draw the
// panels side by side into png: medians as bars, min-max as error bars.
func (res *Results) Chart(gnuplot, png string, panels []Panel) error {
	cols := res.usedColumns()
	tmp, err := os.MkdirTemp("", "mgbench-chart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	base := filepath.Join(tmp, "chart")
	var withData []Panel
	for _, p := range panels {
		for _, key := range p.Rows {
			if r := res.Find(key); r != nil && len(r.Cells) > 0 {
				withData = append(withData, p)
				break
			}
		}
	}
	if len(withData) == 0 {
		return ErrNoData
	}
	panels = withData
	var script strings.Builder
	fmt.Fprintf(&script, "set terminal pngcairo noenhanced size %d,600 font 'sans,9'\nset output %q\n", 480*len(panels), png)
	fmt.Fprintf(&script, "set multiplot layout 1,%d title %q\n", len(panels), res.Title)
	script.WriteString("set style data histograms\nset style histogram errorbars gap 1 lw 1\nset style fill solid 0.8 border -1\n")
	script.WriteString("set key below font ',8'\nset grid ytics\nset yrange [0:*]\nset xtics nomirror\n")
	for i, p := range panels {
		data := fmt.Sprintf("%s.panel%d.dat", base, i+1)
		var d strings.Builder
		// header: cluster, then median/min/max per used column
		used := []Column{}
		for _, c := range cols {
			for _, key := range p.Rows {
				if r := res.Find(key); r != nil && len(r.Cells[c.Key]) > 0 {
					used = append(used, c)
					break
				}
			}
		}
		if len(used) == 0 {
			continue
		}
		for ri, key := range p.Rows {
			fmt.Fprintf(&d, "%q", p.Names[ri])
			for _, c := range used {
				med := res.Median(key, c.Key)
				lo, hi := med, med
				if r := res.Find(key); r != nil && len(r.Cells[c.Key]) > 0 {
					lo, hi = minMax(r.Cells[c.Key])
				}
				if math.IsNaN(med) {
					fmt.Fprintf(&d, " NaN NaN NaN")
					continue
				}
				fmt.Fprintf(&d, " %g %g %g", med, lo, hi)
			}
			d.WriteString("\n")
		}
		if err := os.WriteFile(data, []byte(d.String()), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&script, "set title %q\nset ylabel %q\n", p.Title, p.YUnit)
		script.WriteString("plot ")
		for ci, c := range used {
			if ci > 0 {
				script.WriteString(", \\\n     ")
			}
			col := 2 + 3*ci
			color := res.color(c.Key)
			if ci == 0 {
				fmt.Fprintf(&script, "%q using %d:%d:%d:xtic(1) title %q lc rgb %q", data, col, col+1, col+2, c.Title, color)
			} else {
				fmt.Fprintf(&script, "'' using %d:%d:%d title %q lc rgb %q", col, col+1, col+2, c.Title, color)
			}
		}
		script.WriteString("\n")
	}
	script.WriteString("unset multiplot\n")
	gp := base + ".gp"
	if err := os.WriteFile(gp, []byte(script.String()), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(gnuplot, gp).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gnuplot: %w: %s", err, out)
	}
	return nil
}

// palette colours the columns in the order of Results.Columns, so that a
// setup has the same colour in every panel.
var palette = []string{"#5e35b1", "#9e9e9e", "#1e88e5", "#90caf9", "#d81b60", "#fb8c00", "#ffcc80", "#43a047", "#e53935"}

func (res *Results) color(key string) string {
	for i, c := range res.Columns {
		if c.Key == key {
			return palette[i%len(palette)]
		}
	}
	return "#000000"
}

func minMax(v []float64) (float64, float64) {
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}
