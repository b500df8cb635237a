// Command mgbench measures mailgate side by side with a direct connection to
// Dovecot/Postfix, the nginx mail proxy and Dovecot's own OAuth2 passdb, all
// on 127.0.0.1 in one run, and writes one Markdown table of medians over
// repeated runs (with min-max and the ratio to the direct connection), the
// raw values as JSON and a PNG chart.
//
// It needs root, Dovecot, Postfix and Hydra (scripts/install-test-deps.sh),
// nginx with its mail module, gnuplot for the chart, and a mailgate binary
// (scripts/build.sh). bench/run.sh installs and builds all of that.
//
//	mgbench -mailgate /tmp/mailgate -out bench/results
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/bench/internal/report"
)

// Column keys: the setups compared.
const (
	colDirect   = "direct"
	colPlain    = "plain"
	colMailgate = "mailgate"
	colCold     = "cold"
	colAppPass  = "apppass"
	colNginx    = "nginx"
	colNginx64k = "nginx64k"
	colDMS      = "dms"
)

var columns = []report.Column{
	{Key: colDirect, Title: "direct TLS (Dovecot / Postfix)"},
	{Key: colPlain, Title: "direct plain (ceiling)"},
	{Key: colMailgate, Title: "mailgate"},
	{Key: colCold, Title: "mailgate, no cache"},
	{Key: colAppPass, Title: "mailgate, app password"},
	{Key: colNginx, Title: "nginx"},
	{Key: colNginx64k, Title: "nginx, proxy_buffer 64k"},
	{Key: colDMS, Title: "Dovecot oauth2 (DMS)"},
}

type options struct {
	mailgate    string
	nginx       string
	nginxModule string
	gnuplot     string
	out         string
	name        string
	suites      map[string]bool
	reps        int
	idleReps    int
	loginDur    time.Duration
	concs       []int
	resumeConcs []int
	sessions    []int
	measured    []int // of sessions, the sizes measured (the others get rows that say so)
	mailboxMiB  int
	smtpBigMiB  int
	smtpSmall   int
	keep        bool
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("[mgbench] ")
	var o options
	var suites, concs, resumeConcs, sessions, measured string
	flag.StringVar(&o.mailgate, "mailgate", "", "mailgate binary (required)")
	flag.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx binary")
	flag.StringVar(&o.nginxModule, "nginx-mail-module", "/usr/lib/nginx/modules/ngx_mail_module.so", "nginx mail module")
	flag.StringVar(&o.gnuplot, "gnuplot", "gnuplot", "gnuplot binary for the chart (\"\" = no chart)")
	flag.StringVar(&o.out, "out", "bench/results", "directory for NAME.md, NAME.json and NAME.png")
	flag.StringVar(&o.name, "name", time.Now().Format("2006-01-02-1504"), "base name of the result files")
	flag.StringVar(&suites, "suites", "throughput,login,idle,smtp,provider", "suites to run")
	flag.IntVar(&o.reps, "reps", 5, "repetitions of every measurement (idle: -idle-reps)")
	flag.IntVar(&o.idleReps, "idle-reps", 1, "repetitions of the idle-session measurement")
	flag.DurationVar(&o.loginDur, "login-duration", 5*time.Second, "length of one login run")
	flag.StringVar(&concs, "concurrency", "1,8,64", "login concurrencies")
	flag.StringVar(&resumeConcs, "resume-concurrency", "1,8", "login concurrencies (of -concurrency) also measured with returning clients that resume their TLS session (\"\" = none)")
	flag.StringVar(&sessions, "sessions", "1000,10000", "idle session counts (rows)")
	flag.StringVar(&measured, "sessions-measured", "", "of -sessions, the counts measured; the rows of the others say they were not (\"\" = all)")
	flag.IntVar(&o.mailboxMiB, "mailbox-mib", 100, "size of the FETCH mailbox (messages of 1 MiB)")
	flag.IntVar(&o.smtpBigMiB, "smtp-big-mib", 50, "size of the large SMTP message in MiB")
	flag.IntVar(&o.smtpSmall, "smtp-small", 1000, "number of 10 KiB SMTP messages")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.Parse()
	if o.mailgate == "" {
		log.Fatal("-mailgate is required")
	}
	o.suites = map[string]bool{}
	for _, s := range strings.Split(suites, ",") {
		o.suites[strings.TrimSpace(s)] = true
	}
	var err error
	if o.concs, err = ints(concs); err != nil {
		log.Fatalf("-concurrency: %v", err)
	}
	if o.resumeConcs, err = ints(resumeConcs); err != nil {
		log.Fatalf("-resume-concurrency: %v", err)
	}
	if o.sessions, err = ints(sessions); err != nil {
		log.Fatalf("-sessions: %v", err)
	}
	if o.measured, err = ints(measured); err != nil {
		log.Fatalf("-sessions-measured: %v", err)
	}
	if measured == "" {
		o.measured = o.sessions
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Printf("FAILED: %v", err)
		stop()
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o options) (err error) {
	res := &report.Results{
		Title:   "mailgate benchmarks " + time.Now().Format("2006-01-02 15:04 MST"),
		Base:    colDirect,
		Columns: columns,
	}
	res.Meta = append(res.Meta, machine()...)
	res.Meta = append(res.Meta, fmt.Sprintf("repetitions: %d (idle sessions: %d); login runs of %s; cell = median [min–max] ×ratio to the direct connection of the same run", o.reps, o.idleReps, o.loginDur))
	start := time.Now()
	load0 := loadavg()

	e, err := newEnv(ctx, o)
	if e != nil {
		defer e.close()
		defer func() {
			if err != nil {
				e.printLogs()
			}
		}()
	}
	if err != nil {
		return err
	}
	res.Meta = append(res.Meta, e.versions()...)
	if !e.cacheActive {
		res.Note("mailgate's validation cache is not active in this build: every mailgate login asked the provider (see the provider rows); the \"mailgate\" column is then a cold-cache figure too.")
	}
	steps := []struct {
		name string
		fn   func(context.Context, *report.Results) error
	}{
		{"throughput", e.throughput},
		{"login", e.logins},
		{"smtp", e.smtp},
		{"provider", e.provider},
		{"idle", e.idle},
	}
	for _, s := range steps {
		if !o.suites[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		log.Printf("suite %s", s.name)
		if err = s.fn(ctx, res); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		log.Printf("suite %s done in %s", s.name, time.Since(t0).Round(time.Second))
	}
	for _, n := range res.Notes {
		if strings.HasPrefix(n, "ERRORS") {
			log.Printf("some logins failed; the proxies' logs:")
			e.printLogs()
			break
		}
	}
	res.Meta = append(res.Meta, fmt.Sprintf("load average (1 min) at start %s, at end %s (closing 10,000 sessions raises it by itself); wall time %s", load0, loadavg(), time.Since(start).Round(time.Second)))

	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	base := filepath.Join(o.out, o.name)
	md := res.Markdown()
	if err := os.WriteFile(base+".md", []byte(md), 0o644); err != nil {
		return err
	}
	if err := res.WriteJSON(base + ".json"); err != nil {
		return err
	}
	if o.gnuplot != "" {
		if err := res.Chart(o.gnuplot, base+".png", chartPanels(o)); err != nil {
			log.Printf("chart not drawn: %v", err)
		} else {
			log.Printf("wrote %s.png", base)
		}
	}
	fmt.Print(md)
	log.Printf("wrote %s.md and %s.json", base, base)
	return nil
}

func chartPanels(o options) []report.Panel {
	panels := []report.Panel{
		{Title: "IMAP FETCH and SMTP throughput", YUnit: "MB/s", Rows: []string{"fetch", "smtp.big"}, Names: []string{"IMAP FETCH", fmt.Sprintf("SMTP 1 x %d MiB", o.smtpBigMiB)}},
	}
	// Latency at low and at high concurrency differ by an order of
	// magnitude: one panel each.
	low := report.Panel{Title: "login latency (TCP+TLS+auth+LOGOUT)", YUnit: "ms"}
	high := report.Panel{Title: "login latency, queueing at Dovecot", YUnit: "ms"}
	rate := report.Panel{Title: "logins per second", YUnit: "logins/s"}
	for _, c := range o.concs {
		p := &low
		if c > 8 {
			p = &high
		}
		p.Rows = append(p.Rows, fmt.Sprintf("login.c%d.p50", c), fmt.Sprintf("login.c%d.p99", c))
		p.Names = append(p.Names, fmt.Sprintf("p50 c=%d", c), fmt.Sprintf("p99 c=%d", c))
		if slices.Contains(o.resumeConcs, c) {
			p.Rows = append(p.Rows, fmt.Sprintf("login.c%d.resumed.p50", c))
			p.Names = append(p.Names, fmt.Sprintf("p50 c=%d res.", c))
		}
		rate.Rows = append(rate.Rows, fmt.Sprintf("login.c%d.rate", c))
		rate.Names = append(rate.Names, fmt.Sprintf("c=%d", c))
	}
	cpu := report.Panel{Title: "proxy CPU per login (full / resumed TLS)", YUnit: "ms"}
	for _, c := range o.concs {
		cpu.Rows = append(cpu.Rows, fmt.Sprintf("login.c%d.proxycpu", c))
		cpu.Names = append(cpu.Names, fmt.Sprintf("full c=%d", c))
		if slices.Contains(o.resumeConcs, c) {
			cpu.Rows = append(cpu.Rows, fmt.Sprintf("login.c%d.resumed.proxycpu", c))
			cpu.Names = append(cpu.Names, fmt.Sprintf("res. c=%d", c))
		}
	}
	return append(panels, low, high, rate, cpu)
}

// machine describes the host in one or two lines.
func machine() []string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var memKiB int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fmt.Sscanf(string(b), "MemTotal: %d kB", &memKiB)
	}
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var rl syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return []string{fmt.Sprintf("machine: %d CPUs (%s), %.1f GiB RAM, Linux %s, open files limit %d; shared with other work (see min–max)",
		runtime.NumCPU(), model, float64(memKiB)/(1<<20), strings.TrimSpace(string(kernel)), rl.Max)}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
