package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"
)

const (
	// probeTimeout bounds one readiness probe (dial + greeting).
	probeTimeout = 2 * time.Second
	// convTimeout bounds a whole helper conversation (append, LMTP delivery).
	convTimeout = 30 * time.Second
	// maxLine bounds a server reply line read by the helpers.
	maxLine = 64 << 10
)

// pollReady runs checks in order, retrying each until it succeeds, the daemon
// exits or ctx ends.
func pollReady(ctx context.Context, d *daemon, checks []func(context.Context) error) error {
	return pollReadyOr(ctx, d, nil, checks)
}

// pollReadyOr is pollReady that also gives up as soon as failed (if not nil)
// returns an error: a daemon that is running but cannot serve (Dovecot
// restarting a service that dies at start-up) fails at once, not at ctx's end.
func pollReadyOr(ctx context.Context, d *daemon, failed func() error, checks []func(context.Context) error) error {
	for _, check := range checks {
		for {
			if d.exited() {
				return errExited
			}
			if failed != nil {
				if err := failed(); err != nil {
					return err
				}
			}
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			err := check(pctx)
			cancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), err)
			case <-time.After(pollInterval):
			}
		}
	}
	return nil
}

// lineConn is a minimal line-oriented client connection.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

// dialLine connects to addr (TLS if tlsConf is not nil) with the deadline of ctx.
func dialLine(ctx context.Context, addr string, tlsConf *tls.Config) (*lineConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if tlsConf != nil {
		tc := tls.Client(c, tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		c = tc
	}
	return &lineConn{Conn: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

// readLine reads one line without its CRLF.
func (c *lineConn) readLine() (string, error) {
	var sb strings.Builder
	for {
		chunk, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return "", err
		}
		sb.Write(chunk)
		if sb.Len() > maxLine {
			return "", fmt.Errorf("reply line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return sb.String(), nil
		}
	}
}

// startTLS sends cmd, expects a reply line starting with ok and switches the
// connection to TLS.
func (c *lineConn) startTLS(ctx context.Context, cmd, ok string, conf *tls.Config) error {
	if err := c.writeLine(cmd); err != nil {
		return err
	}
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, ok) {
		return fmt.Errorf("%s: %q", cmd, line)
	}
	tc := tls.Client(c.Conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake after %s: %w", cmd, err)
	}
	c.Conn, c.r = tc, bufio.NewReaderSize(tc, 4096)
	return nil
}

// writeLine sends s + CRLF.
func (c *lineConn) writeLine(s string) error {
	_, err := c.Write([]byte(s + "\r\n"))
	return err
}

// smtpReply reads a (multi-line) SMTP/LMTP reply and returns its code and last line.
func (c *lineConn) smtpReply() (string, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return "", err
		}
		if len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

// expectSMTP reads a reply and checks that it starts with code.
func (c *lineConn) expectSMTP(code string) (string, error) {
	line, err := c.smtpReply()
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(line, code) {
		return line, fmt.Errorf("want %s, got %q", code, line)
	}
	return line, nil
}

// imapTagged reads until the tagged reply for tag and returns it.
func (c *lineConn) imapTagged(tag string) (string, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(line, tag+" ") {
			return line, nil
		}
	}
}

// expectGreeting connects and checks that the first line starts with prefix.
func expectGreeting(ctx context.Context, addr string, tlsConf *tls.Config, prefix string) error {
	return expectGreetingAfter(ctx, addr, tlsConf, "", prefix)
}

// expectGreetingAfter is expectGreeting that first sends preamble (a PROXY
// protocol header).
func expectGreetingAfter(ctx context.Context, addr string, tlsConf *tls.Config, preamble, prefix string) error {
	c, err := dialLine(ctx, addr, tlsConf)
	if err != nil {
		return err
	}
	defer c.Close()
	if preamble != "" {
		if _, err := c.Write([]byte(preamble)); err != nil {
			return err
		}
	}
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, prefix) {
		return fmt.Errorf("%s greeted %q, want %q", addr, line, prefix)
	}
	return nil
}

// crlf converts bare LF line ends to CRLF.
func crlf(msg []byte) []byte {
	s := strings.ReplaceAll(string(msg), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}
