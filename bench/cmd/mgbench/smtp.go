package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/report"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/bench/internal/smtpc"
)

// drainTimeout bounds the wait for Postfix to deliver what was submitted.
const drainTimeout = 3 * time.Minute

// smtp times 1 x big and n x 10 KiB submissions, direct to Postfix
// (submissions, master AUTH PLAIN) and through mailgate (XOAUTH2), and
// records mailgate's peak RSS during each.
func (e *env) smtp(ctx context.Context, res *report.Results) error {
	big := message(sinkUser, sinkUser, "smtp big", e.o.smtpBigMiB<<20)
	small := message(sinkUser, sinkUser, "smtp small", 10<<10)
	bigRow := res.Row("smtp.big", fmt.Sprintf("SMTP 1 x %d MiB, MB/s", e.o.smtpBigMiB), 1)
	bigRSS := res.Row("smtp.big.rss", fmt.Sprintf("mailgate peak RSS during 1 x %d MiB, MiB", e.o.smtpBigMiB), 1)
	bigGrowth := res.Row("smtp.big.rssgrowth", fmt.Sprintf("mailgate peak RSS growth for 1 x %d MiB (peak minus RSS before), MiB", e.o.smtpBigMiB), 1)
	smallRow := res.Row("smtp.small", fmt.Sprintf("SMTP %s x 10 KiB on one connection, msgs/s", fmtInt(e.o.smtpSmall)), 0)
	smallRSS := res.Row("smtp.small.rss", fmt.Sprintf("mailgate peak RSS during %s x 10 KiB, MiB", fmtInt(e.o.smtpSmall)), 1)
	smallGrowth := res.Row("smtp.small.rssgrowth", fmt.Sprintf("mailgate peak RSS growth for %s x 10 KiB (peak minus RSS before), MiB", fmtInt(e.o.smtpSmall)), 1)
	for _, r := range []*report.Row{bigRSS, bigGrowth, smallRSS, smallGrowth} {
		r.RatioTo = "-"
	}
	btls0, btlsErr := backendTLS(e.mg)

	type setup struct {
		col  string
		addr string
		auth func(*smtpc.Conn) error
		pid  int // the proxy, 0 for direct
	}
	setups := []setup{
		{colDirect, e.pf.SubmissionsAddr, func(c *smtpc.Conn) error {
			return c.AuthPlain(sinkUser, e.dc.MasterUser, e.dc.MasterPassword)
		}, 0},
		{colMailgate, e.mg.SMTPSAddr, func(c *smtpc.Conn) error { return c.AuthXOAUTH2(sinkUser, e.tokens[sinkUser]) }, e.mg.PID()},
	}
	tc := e.tlsConf
	delivered := 0
	// session submits msgs on one connection and returns the time they
	// took and, for a proxy, its peak RSS (VmHWM reset right before the
	// transactions) and that peak minus its RSS right after the reset, in MiB.
	session := func(s setup, msgs [][]byte) (took time.Duration, peak, growth float64, err error) {
		c, err := smtpc.Dial(s.addr, tc, 5*time.Minute)
		if err != nil {
			return 0, 0, 0, err
		}
		defer c.Close()
		if err := c.Ehlo("bench.example.test"); err != nil {
			return 0, 0, 0, err
		}
		if err := s.auth(c); err != nil {
			return 0, 0, 0, err
		}
		var before proc.Mem
		if s.pid != 0 {
			if err := proc.ResetPeak(s.pid); err != nil {
				return 0, 0, 0, err
			}
			if before, err = proc.Memory(s.pid); err != nil {
				return 0, 0, 0, err
			}
		}
		t0 := time.Now()
		for _, m := range msgs {
			if err := c.Send(sinkUser, sinkUser, m); err != nil {
				return 0, 0, 0, err
			}
		}
		took = time.Since(t0)
		if s.pid != 0 {
			m, err := proc.Memory(s.pid)
			if err != nil {
				return 0, 0, 0, err
			}
			peak = float64(m.HWM) / 1024
			growth = float64(m.HWM-before.RSS) / 1024
		}
		delivered += len(msgs)
		return took, peak, growth, c.Quit()
	}
	smallBatch := make([][]byte, e.o.smtpSmall)
	for i := range smallBatch {
		smallBatch[i] = small
	}
	for rep := 0; rep < e.o.reps; rep++ {
		for _, s := range setups {
			if err := ctx.Err(); err != nil {
				return err
			}
			took, peak, growth, err := session(s, [][]byte{big})
			if err != nil {
				return fmt.Errorf("%s big: %w", s.col, err)
			}
			bigRow.Add(s.col, float64(len(big))/1e6/took.Seconds())
			if s.pid != 0 {
				bigRSS.Add(s.col, peak)
				bigGrowth.Add(s.col, growth)
			}
			if err := e.waitDelivered(ctx, delivered); err != nil {
				return err
			}
			took, peak, growth, err = session(s, smallBatch)
			if err != nil {
				return fmt.Errorf("%s small: %w", s.col, err)
			}
			smallRow.Add(s.col, float64(len(smallBatch))/took.Seconds())
			if s.pid != 0 {
				smallRSS.Add(s.col, peak)
				smallGrowth.Add(s.col, growth)
			}
			if err := e.waitDelivered(ctx, delivered); err != nil {
				return err
			}
			log.Printf("smtp rep %d %-8s big %.1f MB/s, small %.0f msgs/s", rep+1, s.col,
				bigRow.Cells[s.col][len(bigRow.Cells[s.col])-1], smallRow.Cells[s.col][len(smallRow.Cells[s.col])-1])
		}
	}
	res.Note("SMTP: the client waits for the final 250 of each message (Postfix has queued it); the next measurement starts only after Postfix has delivered everything to Dovecot. Peak RSS is mailgate's VmHWM, reset (clear_refs) right before the measured transactions; the growth rows subtract mailgate's VmRSS read right after that reset.")
	if btls1, err := backendTLS(e.mg); err == nil && btlsErr == nil {
		full, resumed := btls1[false]-btls0[false], btls1[true]-btls0[true]
		res.Note("SMTP backend leg (mailgate -> Postfix submission, STARTTLS): %d of %d TLS handshakes resumed a session during the SMTP rows (mailgate_backend_tls_handshakes_total{proto=\"smtp\"}).", int(resumed), int(full+resumed))
	} else {
		res.Note("SMTP backend leg: mailgate_backend_tls_handshakes_total not readable from this mailgate (%v), so whether mailgate -> Postfix resumed its TLS sessions is not known.", errors.Join(btlsErr, err))
	}
	return nil
}

// backendTLS reads mailgate's SMTP backend TLS handshakes by resumed.
func backendTLS(m *rig.Mailgate) (map[bool]float64, error) {
	fam, err := m.MetricFamily("mailgate_backend_tls_handshakes_total")
	if err != nil {
		return nil, err
	}
	out := map[bool]float64{}
	for labels, v := range fam {
		if !strings.Contains(labels, `proto="smtp"`) {
			continue
		}
		out[strings.Contains(labels, `resumed="true"`)] += v
	}
	return out, nil
}

// waitDelivered waits until sinkUser's Maildir holds n messages.
func (e *env) waitDelivered(ctx context.Context, n int) error {
	dir := e.dc.MaildirFor(sinkUser)
	deadline := time.Now().Add(drainTimeout)
	for {
		got := 0
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			got += len(ents)
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postfix delivered %d of %d messages within %s", got, n, drainTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func fmtInt(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
