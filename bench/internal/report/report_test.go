package report

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/internal/testenv"
)

func TestTable(t *testing.T) {
	res := &Results{Base: "d", Columns: []Column{{"d", "direct"}, {"m", "mailgate"}, {"x", "unused"}}}
	r := res.Row("fetch", "FETCH, MB/s", 0)
	for _, v := range []float64{100, 120, 110} {
		r.Add("d", v)
	}
	for _, v := range []float64{1000, 1200} {
		r.Add("m", v)
	}
	cpu := res.Row("cpu", "CPU, ms", 2)
	cpu.RatioTo = "-"
	cpu.Add("m", 2.5)
	res.Row("rcpu", "CPU resumed, ms", 2)
	rcpu := res.Find("rcpu")
	rcpu.RatioRow, rcpu.RatioName = "cpu", "of full"
	rcpu.Add("m", 1.0)
	rcpu.Exclude("d", 20)
	rcpu.Mark("d", "not resumed")
	got := res.Table()
	for _, want := range []string{
		"| measurement | direct | mailgate |\n",
		"| FETCH, MB/s | 110 [100–120] | 1,100 [1,000–1,200] ×10.00 |\n",
		"| CPU, ms | | 2.50 |\n",
		"| CPU resumed, ms | not resumed | 1.00 ×0.40 of full |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "unused") {
		t.Errorf("a column without values is shown:\n%s", got)
	}
}

func TestChart(t *testing.T) {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("gnuplot not installed (scripts/install-test-deps.sh installs gnuplot-nox)")
		}
		t.Skip("gnuplot not installed")
	}
	res := &Results{Title: "t", Base: "d", Columns: []Column{{"d", "direct"}, {"m", "mailgate"}}}
	res.Row("fetch", "FETCH", 0).Add("d", 100)
	res.Row("fetch", "FETCH", 0).Add("m", 200)
	png := filepath.Join(t.TempDir(), "c.png")
	panels := []Panel{
		{Title: "throughput", Rows: []string{"fetch"}, Names: []string{"FETCH"}},
		{Title: "empty", Rows: []string{"nothing"}, Names: []string{"x"}},
	}
	if err := res.Chart(gp, png, panels); err != nil {
		t.Fatal(err)
	}
	if err := (&Results{}).Chart(gp, png, panels); err != ErrNoData {
		t.Errorf("chart of no data: got %v, want ErrNoData", err)
	}
}
