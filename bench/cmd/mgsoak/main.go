// Command mgsoak is the soak test of issue 11 (hostile traffic): mailgate,
// the real binary, in front of the in-process demo backends (internal/demo:
// an IMAP server taking master logins and a token issuer), all on loopback.
//
//  1. It opens 1,000 logged-in IMAP sessions in IDLE (cached-token logins,
//     10 per source address 127.0.1.x so that per-network caps admit them).
//  2. Then 20,000 connections that never send a byte, from 127.1.x.y (10
//     per address), half to the implicit-TLS port and half to the STARTTLS
//     port, held by child processes (-worker) so that the flood is not
//     limited by this process's own open-files limit.
//  3. From the flood's start, a new login from a fresh address every 500 ms
//     (reported while the flood is being opened; required to succeed within
//     1 s once it is held, and also before with -strict-opening), and
//     every IDLE session must still receive the EXISTS of a message
//     appended to its mailbox while the flood is held.
//  4. It records mailgate's RSS/PSS, peak RSS, descriptors and goroutines at
//     baseline, with the sessions, at the flood's peak and after
//     everything is closed, and checks that descriptors and goroutines come
//     back to the baseline and that the peak RSS stays under -max-rss.
//  5. In a fresh mailgate per listener and state, whose pre-login pool
//     holds them all (max_prelogin_connections K+100), it opens K idle
//     connections of that kind and reports the PSS growth per connection:
//     IMAPS and SMTPS waiting in the TLS handshake and after TLS and the
//     greeting; IMAP STARTTLS and SMTP submission STARTTLS after the
//     plaintext greeting (the SMTP listeners in front of internal/demo's
//     SMTP backend).
//
// It stops by itself (every loop is bounded in count and time, -timeout
// bounds the whole run), uses only loopback addresses, prints a Markdown
// report and exits 1 when an assertion fails.
//
//	go build -o /tmp/mailgate ./cmd/mailgate && go run ./bench/cmd/mgsoak -mailgate /tmp/mailgate
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/bench/internal/report"
)

type options struct {
	mailgate      string
	sessions      int
	users         int
	sessPerAddr   int
	flood         int
	floodPerAddr  int
	floodWorkers  int
	probeEvery    time.Duration
	loginWithin   time.Duration
	strictOpening bool
	maxRSS        int // MiB
	tolFDs, tolG  int
	preloginK     int
	preloginPool  int
	holdTimeouts  time.Duration
	limits        limitFlags
	timeout       time.Duration
	out           string
	keep          bool
	floodOpenWait time.Duration
}

// limitFlags are -limit key=value overrides of the soak run's limits.
type limitFlags map[string]string

func (l limitFlags) String() string { return fmt.Sprint(map[string]string(l)) }

func (l limitFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return errors.New("want key=value, e.g. max_prelogin_connections=2000")
	}
	l[k] = v
	return nil
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("[mgsoak] ")
	o := options{limits: limitFlags{}}
	var workerSpec string
	flag.StringVar(&workerSpec, "worker", "", "internal: run as a flood worker with this JSON spec")
	flag.StringVar(&o.mailgate, "mailgate", "", "mailgate binary (required; build it from ./cmd/mailgate)")
	flag.IntVar(&o.sessions, "sessions", 1000, "logged-in IMAP sessions in IDLE")
	flag.IntVar(&o.users, "users", 100, "mailboxes the sessions are spread over")
	flag.IntVar(&o.sessPerAddr, "sessions-per-addr", 10, "sessions per source address (127.0.1.x)")
	flag.IntVar(&o.flood, "flood", 20000, "idle pre-login connections of the flood (half per listener)")
	flag.IntVar(&o.floodPerAddr, "flood-per-addr", 10, "flood connections per source address (127.1.x.y)")
	flag.IntVar(&o.floodWorkers, "flood-workers", 0, "processes holding the flood (0: as many as the open-files hard limit needs, at least 2)")
	flag.DurationVar(&o.probeEvery, "probe-every", 500*time.Millisecond, "period of the login probes during the flood")
	flag.DurationVar(&o.loginWithin, "login-within", time.Second, "a login probe must succeed within this")
	flag.BoolVar(&o.strictOpening, "strict-opening", false, "also require -login-within of the probes made while the flood is being opened (reported either way)")
	flag.IntVar(&o.maxRSS, "max-rss", 256, "bound on mailgate's peak RSS (VmHWM) over the soak, MiB")
	flag.IntVar(&o.tolFDs, "fd-tolerance", 2, "descriptors above the baseline still counted as back")
	flag.IntVar(&o.tolG, "goroutine-tolerance", 5, "goroutines above the baseline still counted as back")
	flag.IntVar(&o.preloginK, "prelogin-k", 2000, "connections per listener and state for the pre-login memory measurement (0: skip)")
	flag.IntVar(&o.preloginPool, "prelogin-pool", 0, "limits.max_prelogin_connections of the measurement runs (0: prelogin-k + 100; with max_connections 100 so that mailgate need not lower the caps to fit its open-files limit)")
	flag.DurationVar(&o.holdTimeouts, "prelogin-timeouts", 2*time.Minute, "limits.handshake_timeout, preauth_timeout and command_timeout of every run, so that mailgate holds the idle connections for the whole measurement (0: mailgate's defaults)")
	flag.Var(o.limits, "limit", "override a limits key of the soak run, key=value (repeatable), e.g. -limit exempt_networks='[\"127.0.1.0/24\"]'")
	flag.DurationVar(&o.floodOpenWait, "flood-open-timeout", 3*time.Minute, "bound on opening the flood")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configurations, mailgate's logs)")
	flag.Parse()
	if workerSpec != "" {
		os.Exit(runWorker(workerSpec))
	}
	if o.mailgate == "" {
		log.Fatal("-mailgate is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	rep, err := run(ctx, o)
	if rep != nil {
		report.Print(rep.markdown(), o.out)
	}
	if err != nil {
		log.Printf("FAILED: %v", err)
		cancel()
		stop()
		os.Exit(1)
	}
	log.Printf("all assertions passed")
}
