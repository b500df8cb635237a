package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// The plaintext part of a submission connection on the STARTTLS port (RFC
// 3207) is mailgate's own, not go-smtp's: greeting, EHLO/HELO, NOOP, RSET,
// QUIT and STARTTLS, everything else refused until TLS is up. The TLS
// handshake then runs under Limits.HandshakeTimeout, bytes a client
// pipelined after STARTTLS are dropped (never read as commands inside TLS),
// and go-smtp only ever talks to a client through TLS that mailgate
// terminated (smtpTLSView), which lets mailgate see where the client's
// plaintext stream ends.

// smtpPreTLSMaxLine caps a command line before TLS (RFC 5321 section 4.5.3.1.4).
const smtpPreTLSMaxLine = 512

// Replies of the plaintext phase.
const (
	smtpPreTLSNeedTLS = "530 5.7.0 Must issue a STARTTLS command first"
	smtpPreTLSAuthTLS = "523 5.7.10 TLS is required"
	smtpPreTLSUnknown = "500 5.5.2 Unrecognized command"
	smtpPreTLSTooLong = "500 5.5.6 Line too long"
	smtpPreTLSTooMany = "421 4.7.0 Too many errors, closing connection"
	smtpPreTLSTimeout = "421 4.4.2 Timeout, closing connection"
	smtpPreTLSReady   = "220 2.0.0 Ready to start TLS"
	smtpPreTLSBye     = "221 2.0.0 Bye"
	smtpPreTLSOK      = "250 2.0.0 OK"
	smtpPreTLSBadEHLO = "501 5.5.4 Syntax: EHLO hostname"
)

// errSMTPPreTLSDone ends the plaintext phase without TLS (QUIT, errors).
var errSMTPPreTLSDone = errors.New("smtp: closed before TLS")

// preTLS runs the plaintext phase on cc until the client has done STARTTLS,
// and returns the TLS connection over cc.
func (f *smtpFront) preTLS(cc *smtpClientConn) (*tls.Conn, error) {
	br := bufio.NewReaderSize(cc, smtpPreTLSMaxLine)
	w := func(line string) error {
		cc.SetWriteDeadline(time.Now().Add(f.s.limits.WriteTimeout))
		_, err := io.WriteString(cc, line+"\r\n")
		return err
	}
	if err := w("220 " + f.opts.Hostname + " ESMTP mailgate"); err != nil {
		return nil, err
	}
	errs := 0 // unknown commands; the rest is bounded by the pre-auth time
	for {
		cc.SetReadDeadline(earliest(time.Now().Add(f.s.limits.CommandTimeout), cc.preauthEnd))
		line, err := readLimitedLine(br, smtpPreTLSMaxLine)
		if err != nil {
			return nil, f.preTLSReadError(err, w)
		}
		verb, arg, _ := strings.Cut(string(line), " ")
		var reply string
		switch strings.ToUpper(verb) {
		case "EHLO":
			if strings.TrimSpace(arg) == "" {
				reply = smtpPreTLSBadEHLO
				break
			}
			reply = "250-" + f.opts.Hostname + "\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES"
		case "HELO":
			reply = "250 " + f.opts.Hostname
		case "NOOP", "RSET":
			reply = smtpPreTLSOK
		case "QUIT":
			w(smtpPreTLSBye)
			return nil, errSMTPPreTLSDone
		case "STARTTLS":
			return f.startTLS(cc, br, w)
		case "AUTH": // the line is not logged: it may hold a credential
			reply = smtpPreTLSAuthTLS
		case "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN", "HELP":
			reply = smtpPreTLSNeedTLS
		default:
			reply = smtpPreTLSUnknown
			errs++
		}
		if errs >= f.s.limits.MaxErrors {
			w(smtpPreTLSTooMany)
			return nil, errSMTPPreTLSDone
		}
		if err := w(reply); err != nil {
			return nil, err
		}
	}
}

// startTLS answers STARTTLS and runs the handshake under the handshake
// timeout. Whatever the client sent after STARTTLS is dropped: it was sent
// in the clear and must not count as sent inside TLS (CVE-2011-0411).
func (f *smtpFront) startTLS(cc *smtpClientConn, br *bufio.Reader, w func(string) error) (*tls.Conn, error) {
	if n := br.Buffered(); n > 0 {
		br.Discard(n)
		cc.log.Info("dropped plaintext pipelined after STARTTLS", "bytes", n)
	}
	if err := w(smtpPreTLSReady); err != nil {
		return nil, err
	}
	tc := tls.Server(cc, f.s.tls.smtp)
	cc.SetDeadline(earliest(time.Now().Add(f.s.limits.HandshakeTimeout), cc.preauthEnd))
	err := tc.Handshake()
	cc.SetDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// preTLSReadError answers a failed read of the plaintext phase.
func (f *smtpFront) preTLSReadError(err error, w func(string) error) error {
	switch {
	case errors.Is(err, errLineTooLong):
		w(smtpPreTLSTooLong)
	case errors.Is(err, os.ErrDeadlineExceeded):
		w(smtpPreTLSTimeout)
	}
	return err
}

// smtpTLSView is what go-smtp talks to: the client's TLS connection seen as
// a plain net.Conn (go-smtp's own TLS handling is off: every connection it
// gets is TLS that mailgate terminated). Its Read records the end of the
// client's stream, TLS close_notify included, which go-smtp's BDAT chunk
// copy would take for a complete chunk. With skipGreeting (after STARTTLS)
// go-smtp's greeting is not sent: the client has had one already.
type smtpTLSView struct {
	*tls.Conn
	cc           *smtpClientConn
	skipGreeting bool
}

func (v *smtpTLSView) Read(p []byte) (int, error) {
	n, err := v.Conn.Read(p)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
		v.cc.sawEOF.Store(true)
	}
	return n, err
}

func (v *smtpTLSView) Write(p []byte) (int, error) {
	if v.skipGreeting {
		v.skipGreeting = false
		if i := strings.Index(string(p), "\r\n"); i >= 0 && strings.HasPrefix(string(p), "220") {
			n, err := v.Conn.Write(p[i+2:])
			return n + i + 2, err
		}
	}
	return v.Conn.Write(p)
}

// tlsVersion is the TLS version of the client's connection, 0 before TLS.
func (c *smtpClientConn) tlsVersion() uint16 {
	if p := c.top.Load(); p != nil {
		if v, ok := (*p).(*smtpTLSView); ok {
			return v.ConnectionState().Version
		}
	}
	return 0
}
