package smtp

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The plaintext part of a submission connection on the STARTTLS port (RFC
// 3207) is mailgate's own, not go-smtp's: greeting, EHLO/HELO, NOOP, RSET,
// QUIT and STARTTLS, everything else refused until TLS is up. The TLS
// handshake then runs under Limits.HandshakeTimeout, bytes a client
// pipelined after STARTTLS are dropped (never read as commands inside TLS),
// and go-smtp only ever talks to a client through TLS that mailgate
// terminated (tlsView), which lets mailgate see where the client's
// plaintext stream ends.

// preTLSMaxLine caps a command line before TLS (RFC 5321 section 4.5.3.1.4).
const preTLSMaxLine = 512

// Replies of the plaintext phase.
const (
	preTLSNeedTLS = "530 5.7.0 Must issue a STARTTLS command first"
	preTLSAuthTLS = "523 5.7.10 TLS is required"
	preTLSUnknown = "500 5.5.2 Unrecognized command"
	preTLSTooLong = "500 5.5.6 Line too long"
	preTLSTooMany = "421 4.7.0 Too many errors, closing connection"
	preTLSTimeout = "421 4.4.2 Timeout, closing connection"
	preTLSReady   = "220 2.0.0 Ready to start TLS"
	preTLSBye     = "221 2.0.0 Bye"
	preTLSOK      = "250 2.0.0 OK"
	preTLSBadEHLO = "501 5.5.4 Syntax: EHLO hostname"
)

// errPreTLSDone ends the plaintext phase without TLS (QUIT, errors).
var errPreTLSDone = errors.New("smtp: closed before TLS")

// preTLS runs the plaintext phase on cc until the client has done STARTTLS,
// and returns the TLS connection over cc.
func (f *Front) preTLS(cc *clientConn) (*tls.Conn, error) {
	br := bufio.NewReaderSize(cc, preTLSMaxLine)
	w := func(line string) error {
		cc.SetWriteDeadline(time.Now().Add(f.lim.WriteTimeout))
		_, err := io.WriteString(cc, line+"\r\n")
		return err
	}
	if err := w("220 " + f.opts.Hostname + " ESMTP mailgate"); err != nil {
		return nil, err
	}
	errs := 0 // unknown commands; the rest is bounded by the pre-auth time
	for {
		cc.SetReadDeadline(earliest(time.Now().Add(f.lim.CommandTimeout), cc.pc.Deadline))
		line, err := proxy.ReadLine(br, preTLSMaxLine)
		if err != nil {
			return nil, f.preTLSReadError(err, w)
		}
		verb, arg, _ := strings.Cut(string(line), " ")
		var reply string
		switch strings.ToUpper(verb) {
		case "EHLO":
			if strings.TrimSpace(arg) == "" {
				reply = preTLSBadEHLO
				break
			}
			reply = "250-" + f.opts.Hostname + "\r\n250-STARTTLS\r\n250 ENHANCEDSTATUSCODES"
		case "HELO":
			reply = "250 " + f.opts.Hostname
		case "NOOP", "RSET":
			reply = preTLSOK
		case "QUIT":
			w(preTLSBye)
			return nil, errPreTLSDone
		case "STARTTLS":
			return f.startTLS(cc, br, w)
		case "AUTH": // the line is not logged: it may hold a credential
			reply = preTLSAuthTLS
		case "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN", "HELP":
			reply = preTLSNeedTLS
		default:
			reply = preTLSUnknown
			errs++
		}
		if errs >= f.lim.MaxErrors {
			w(preTLSTooMany)
			return nil, errPreTLSDone
		}
		if err := w(reply); err != nil {
			return nil, err
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// startTLS answers STARTTLS and runs the handshake (proxy.Conn.Handshake:
// the handshake timeout, at most the pre-auth deadline). Whatever the
// client sent after STARTTLS is dropped: it was sent in the clear and must
// not count as sent inside TLS (CVE-2011-0411).
func (f *Front) startTLS(cc *clientConn, br *bufio.Reader, w func(string) error) (*tls.Conn, error) {
	if n := br.Buffered(); n > 0 {
		br.Discard(n)
		cc.log.Info("dropped plaintext pipelined after STARTTLS", "bytes", n)
	}
	if err := w(preTLSReady); err != nil {
		return nil, err
	}
	return cc.pc.Handshake(cc)
}

// preTLSReadError answers a failed read of the plaintext phase.
func (f *Front) preTLSReadError(err error, w func(string) error) error {
	switch {
	case errors.Is(err, proxy.ErrLineTooLong):
		w(preTLSTooLong)
	case errors.Is(err, os.ErrDeadlineExceeded):
		w(preTLSTimeout)
	}
	return err
}

// tlsView is what go-smtp talks to: the client's TLS connection seen as a
// plain net.Conn (go-smtp's own TLS handling is off: every connection it
// gets is TLS that mailgate terminated). Its Read records the end of the
// client's stream, TLS close_notify included, which go-smtp's BDAT chunk
// copy would take for a complete chunk; its Write tells a SASL exchange
// waiting for a response what go-smtp answered instead (auth.go). With
// skipGreeting (after STARTTLS) go-smtp's greeting is not sent: the client
// has had one already.
type tlsView struct {
	*tls.Conn
	cc           *clientConn
	skipGreeting bool
}

func (v *tlsView) Read(p []byte) (int, error) {
	n, err := v.Conn.Read(p)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)) {
		v.cc.sawEOF.Store(true)
	}
	return n, err
}

func (v *tlsView) Write(p []byte) (int, error) {
	if b := v.cc.exchange.Load(); b != nil {
		b.wrote(p)
	}
	if v.skipGreeting {
		v.skipGreeting = false
		if i := strings.Index(string(p), "\r\n"); i >= 0 && strings.HasPrefix(string(p), "220") {
			n, err := v.Conn.Write(p[i+2:])
			return n + i + 2, err
		}
	}
	return v.Conn.Write(p)
}
