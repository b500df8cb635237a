package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/report"
)

// fetchReadBuffer is the client's read buffer for FETCH.
const fetchReadBuffer = 64 << 10

// throughput fills bigUser's INBOX with o.mailboxMiB messages of 1 MiB and
// times FETCH 1:* BODY.PEEK[] over every setup, reps times, setups
// interleaved within each repetition.
func (e *env) throughput(ctx context.Context, res *report.Results) error {
	log.Printf("filling %s with %d x 1 MiB", bigUser, e.o.mailboxMiB)
	for i := 0; i < e.o.mailboxMiB; i++ {
		msg := message(sinkUser, bigUser, fmt.Sprintf("fetch %d", i), 1<<20)
		if err := e.dc.Append(ctx, bigUser, msg); err != nil {
			return fmt.Errorf("append: %w", err)
		}
	}
	type setup struct {
		col   string
		addr  string
		tls   *tls.Config
		login func(*imapc.Conn) error
		proxy func() []int // the proxy's processes; nil for a direct connection
	}
	master := func(c *imapc.Conn) error { return c.AuthPlain(bigUser, e.dc.MasterUser, e.dc.MasterPassword) }
	oauth := func(c *imapc.Conn) error { return c.AuthXOAUTH2(bigUser, e.tokens[bigUser]) }
	plainLogin := func(c *imapc.Conn) error { return c.Login(bigUser, password) }
	mgPID := func() []int { return []int{e.mg.PID()} }
	setups := []setup{
		{colDirect, e.dc.IMAPSAddr, e.tlsConf, master, nil},
		{colPlain, e.dc.IMAPAddr, nil, master, nil},
		{colMailgate, e.mg.IMAPSAddr, e.tlsConf, oauth, mgPID},
		{colNginx, e.ngx.IMAPSAddr, e.tlsConf, plainLogin, e.ngx.PIDs},
		{colNginx64k, e.ngx.IMAPS64kAddr, e.tlsConf, plainLogin, e.ngx.PIDs},
	}
	row := res.Row("fetch", fmt.Sprintf("IMAP FETCH %d x 1 MiB over TLS, MB/s", e.o.mailboxMiB), 0)
	cpuRow := res.Row("fetch.proxycpu", "proxy CPU per 100 MB relayed (that FETCH), ms", 0)
	cpuRow.RatioTo = "-"
	// fetch returns MB/s and, for a proxy, its CPU ms per 10^8 bytes
	// relayed (utime+stime of its processes from just before the FETCH
	// command to its tagged OK).
	fetch := func(s setup) (float64, float64, error) {
		c, err := imapc.Dial(s.addr, imapc.Options{TLS: s.tls, ReadBuffer: fetchReadBuffer, Timeout: 2 * time.Minute})
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		if err := s.login(c); err != nil {
			return 0, 0, err
		}
		if n, err := c.Select("INBOX"); err != nil || n < e.o.mailboxMiB {
			return 0, 0, fmt.Errorf("select: %d messages, %v", n, err)
		}
		var cpu0 float64
		if s.proxy != nil {
			cpu0 = proc.SumCPU(s.proxy(), 0)
		}
		t0 := time.Now()
		bytes, err := c.FetchAll()
		took := time.Since(t0)
		var cpu float64
		if s.proxy != nil {
			cpu = proc.SumCPU(s.proxy(), 0) - cpu0
		}
		if err != nil {
			return 0, 0, err
		}
		if bytes < int64(e.o.mailboxMiB)<<20 {
			return 0, 0, fmt.Errorf("fetched only %d bytes", bytes)
		}
		return float64(bytes) / 1e6 / took.Seconds(), cpu * 1000 * 1e8 / float64(bytes), c.Logout()
	}
	// Warm Dovecot's and the page cache once.
	if _, _, err := fetch(setups[1]); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for rep := 0; rep < e.o.reps; rep++ {
		for _, s := range setups {
			if err := ctx.Err(); err != nil {
				return err
			}
			v, cpu, err := fetch(s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.col, err)
			}
			row.Add(s.col, v)
			if s.proxy != nil {
				cpuRow.Add(s.col, cpu)
			}
			log.Printf("fetch rep %d %-9s %6.0f MB/s  proxy CPU %4.0f ms per 100 MB", rep+1, s.col, v, cpu)
		}
	}
	row.RatioTo = colDirect
	res.Note("proxy CPU per 100 MB: utime+stime (/proc/<pid>/stat; mailgate: its process, nginx: master + workers) from just before the FETCH command to its tagged OK, per 10^8 bytes of literal data received (100 MiB = 1.05 x 10^8); /proc counts in 10 ms ticks, so one reading is +-10 ms.")
	return nil
}
