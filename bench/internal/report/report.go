// Package report turns repeated measurements into the one Markdown table of
// the benchmarks (median, min-max, ratio to the direct connection), a JSON
// file of every raw value, and a PNG chart drawn by gnuplot.
package report

import (
	"encoding/json"
	"fmt"
	"log"
	"math"
	"os"
	"strings"

	"github.com/mailgate/mailgate/bench/internal/stats"
)

// Column is one setup (direct, mailgate, nginx, ...).
type Column struct {
	Key   string `json:"key"`
	Title string `json:"title"`
}

// Row is one measurement; Cells holds the value of every run per column.
type Row struct {
	Key      string               `json:"key"`
	Label    string               `json:"label"`
	Decimals int                  `json:"decimals"`
	Cells    map[string][]float64 `json:"cells"`
	// RatioTo is the column the ratio is taken against; "" = the results'
	// Base column; "-" = no ratio.
	RatioTo string `json:"ratio_to,omitempty"`
	// RatioRow, when set, takes each column's ratio against the same
	// column's median in that row instead (e.g. a login that resumed its
	// TLS session against the full-handshake login of the same setup),
	// written "×0.41 RatioName".
	RatioRow  string `json:"ratio_row,omitempty"`
	RatioName string `json:"ratio_name,omitempty"`
	// Marks are words printed in a column's cell, after the value or alone
	// when the column has none (e.g. "not resumed").
	Marks map[string]string `json:"marks,omitempty"`
	// Excluded are the raw values of runs left out of a column's cell
	// (e.g. login runs whose TLS sessions were not resumed).
	Excluded map[string][]float64 `json:"excluded,omitempty"`
}

// Mark sets the words printed in col's cell.
func (r *Row) Mark(col, text string) {
	if r.Marks == nil {
		r.Marks = map[string]string{}
	}
	r.Marks[col] = text
}

// Exclude records one run's value for col that the cell leaves out.
func (r *Row) Exclude(col string, v float64) {
	if r.Excluded == nil {
		r.Excluded = map[string][]float64{}
	}
	r.Excluded[col] = append(r.Excluded[col], v)
}

// Add records one run's value for column col.
func (r *Row) Add(col string, v float64) {
	if r.Cells == nil {
		r.Cells = map[string][]float64{}
	}
	r.Cells[col] = append(r.Cells[col], v)
}

// Results are all rows of one benchmark run.
type Results struct {
	Title   string   `json:"title"`
	Meta    []string `json:"meta"`
	Base    string   `json:"base"` // the column ratios are taken against
	Columns []Column `json:"columns"`
	Rows    []*Row   `json:"rows"`
	Notes   []string `json:"notes"`
}

// Row returns the row key, creating it (in order) with label and decimals.
func (res *Results) Row(key, label string, decimals int) *Row {
	for _, r := range res.Rows {
		if r.Key == key {
			return r
		}
	}
	r := &Row{Key: key, Label: label, Decimals: decimals, Cells: map[string][]float64{}}
	res.Rows = append(res.Rows, r)
	return r
}

// Find returns the row key or nil.
func (res *Results) Find(key string) *Row {
	for _, r := range res.Rows {
		if r.Key == key {
			return r
		}
	}
	return nil
}

// Median is the median of row key in column col (NaN when absent).
func (res *Results) Median(key, col string) float64 {
	r := res.Find(key)
	if r == nil || len(r.Cells[col]) == 0 {
		return math.NaN()
	}
	return stats.Summarize(r.Cells[col]).Median
}

// Note adds a line under the table.
func (res *Results) Note(format string, args ...any) {
	res.Notes = append(res.Notes, fmt.Sprintf(format, args...))
}

// usedColumns are the columns that have at least one value.
func (res *Results) usedColumns() []Column {
	var cols []Column
	for _, c := range res.Columns {
		for _, r := range res.Rows {
			if len(r.Cells[c.Key]) > 0 || r.Marks[c.Key] != "" {
				cols = append(cols, c)
				break
			}
		}
	}
	return cols
}

// Table is the Markdown table: one row per measurement, one column per
// setup; a cell is "median [min–max] ×ratio".
func (res *Results) Table() string {
	cols := res.usedColumns()
	var b strings.Builder
	b.WriteString("| measurement |")
	for _, c := range cols {
		b.WriteString(" " + c.Title + " |")
	}
	b.WriteString("\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range res.Rows {
		b.WriteString("| " + r.Label + " |")
		base := res.Base
		if r.RatioTo != "" {
			base = r.RatioTo
		}
		baseMed := math.NaN()
		if v := r.Cells[base]; len(v) > 0 && base != "-" {
			baseMed = stats.Summarize(v).Median
		}
		for _, c := range cols {
			v := r.Cells[c.Key]
			mark := r.Marks[c.Key]
			if len(v) == 0 {
				if mark != "" {
					b.WriteString(" " + mark)
				}
				b.WriteString(" |")
				continue
			}
			s := stats.Summarize(v)
			cell := num(s.Median, r.Decimals)
			if s.N > 1 && s.Min != s.Max {
				cell += " [" + num(s.Min, r.Decimals) + "–" + num(s.Max, r.Decimals) + "]"
			}
			switch {
			case r.RatioRow != "":
				if m := res.Median(r.RatioRow, c.Key); !math.IsNaN(m) && m != 0 {
					cell += fmt.Sprintf(" ×%.2f", s.Median/m)
					if r.RatioName != "" {
						cell += " " + r.RatioName
					}
				}
			case !math.IsNaN(baseMed) && baseMed != 0 && c.Key != base:
				cell += fmt.Sprintf(" ×%.2f", s.Median/baseMed)
			}
			if mark != "" {
				cell += " " + mark
			}
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// num formats v with decimals and thousands separators.
func num(v float64, decimals int) string {
	s := fmt.Sprintf("%.*f", decimals, v)
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var g strings.Builder
	for i, ch := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			g.WriteByte(',')
		}
		g.WriteRune(ch)
	}
	out := g.String()
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

// Markdown is the whole report: title, meta lines, table and notes.
func (res *Results) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", res.Title)
	for _, m := range res.Meta {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n" + res.Table() + "\n")
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// WriteJSON writes every raw value to path.
func (res *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Print writes a Markdown report to stdout and, when path is not empty,
// to the file path too (a failure to write it is logged).
func Print(md, path string) {
	fmt.Print(md)
	if path == "" {
		return
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		log.Printf("write %s: %v", path, err)
	}
}
