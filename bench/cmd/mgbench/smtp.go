package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/report"
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
	smallRow := res.Row("smtp.small", fmt.Sprintf("SMTP %s x 10 KiB on one connection, msgs/s", fmtInt(e.o.smtpSmall)), 0)
	smallRSS := res.Row("smtp.small.rss", fmt.Sprintf("mailgate peak RSS during %s x 10 KiB, MiB", fmtInt(e.o.smtpSmall)), 1)
	bigRSS.RatioTo, smallRSS.RatioTo = "-", "-"

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
	session := func(s setup, msgs [][]byte) (time.Duration, float64, error) {
		c, err := smtpc.Dial(s.addr, tc, 5*time.Minute)
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		if err := c.Ehlo("bench.example.test"); err != nil {
			return 0, 0, err
		}
		if err := s.auth(c); err != nil {
			return 0, 0, err
		}
		if s.pid != 0 {
			if err := proc.ResetPeak(s.pid); err != nil {
				return 0, 0, err
			}
		}
		t0 := time.Now()
		for _, m := range msgs {
			if err := c.Send(sinkUser, sinkUser, m); err != nil {
				return 0, 0, err
			}
		}
		took := time.Since(t0)
		var peak float64
		if s.pid != 0 {
			m, err := proc.Memory(s.pid)
			if err != nil {
				return 0, 0, err
			}
			peak = float64(m.HWM) / 1024
		}
		delivered += len(msgs)
		return took, peak, c.Quit()
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
			took, peak, err := session(s, [][]byte{big})
			if err != nil {
				return fmt.Errorf("%s big: %w", s.col, err)
			}
			bigRow.Add(s.col, float64(len(big))/1e6/took.Seconds())
			if s.pid != 0 {
				bigRSS.Add(s.col, peak)
			}
			if err := e.waitDelivered(ctx, delivered); err != nil {
				return err
			}
			took, peak, err = session(s, smallBatch)
			if err != nil {
				return fmt.Errorf("%s small: %w", s.col, err)
			}
			smallRow.Add(s.col, float64(len(smallBatch))/took.Seconds())
			if s.pid != 0 {
				smallRSS.Add(s.col, peak)
			}
			if err := e.waitDelivered(ctx, delivered); err != nil {
				return err
			}
			log.Printf("smtp rep %d %-8s big %.1f MB/s, small %.0f msgs/s", rep+1, s.col,
				bigRow.Cells[s.col][len(bigRow.Cells[s.col])-1], smallRow.Cells[s.col][len(smallRow.Cells[s.col])-1])
		}
	}
	res.Note("SMTP: the client waits for the final 250 of each message (Postfix has queued it); the next measurement starts only after Postfix has delivered everything to Dovecot. Peak RSS is mailgate's VmHWM, reset right before the measured transactions.")
	return nil
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
