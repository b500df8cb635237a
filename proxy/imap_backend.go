package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// imapSession is a backend IMAP connection, logged in as the user.
type imapSession struct {
	backend net.Conn
	br      *bufio.Reader // may hold bytes the backend sent after the login reply
	log     *slog.Logger
	// id is who logged in; token is kept for revalidation only (never
	// logged). Both are set by the caller of backendLogin.
	id       auth.Identity
	token    string
	password bool // logged in with the user's own password: no lifetime watch
}

// imapLogin is what mailgate logs in to the backend with: the master user on
// behalf of a verified user (authzid=user, authcid=master), or, for password
// passthrough, the user's own credentials (own: refusals go to the client).
type imapLogin struct {
	authzid, authcid, password string
	own                        bool
}

// imapRefusal is the backend's tagged NO or BAD to a login with the user's
// own credentials, passed to the client verbatim.
type imapRefusal struct {
	reply  []byte // the untagged lines before it and the tagged line, each with CRLF
	status string // NO or BAD
	code   string // the response code, upper case ("" if none)
}

func (e *imapRefusal) Error() string {
	if e.code != "" {
		return fmt.Sprintf("backend refused the login: %s [%s]", e.status, e.code)
	}
	return "backend refused the login: " + e.status
}

// credentials reports whether the backend judged the credentials (wrong
// password, unknown user, expired...) rather than failing for another reason
// (unavailable, a protocol or configuration problem).
func (e *imapRefusal) credentials() bool {
	if e.status != "NO" {
		return false
	}
	switch e.code {
	case "", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED":
		return true
	}
	return false
}

// Unwrap classifies the refusal for errors.Is.
func (e *imapRefusal) Unwrap() error {
	if e.credentials() {
		return errBackendRefused
	}
	return errBackendUnavailable
}

// Tags of mailgate's own commands to the backend. The backend answers in
// order, so they cannot be confused with the client's tag even if equal.
const (
	tagStartTLS = "mg0"
	tagID       = "mg1"
)

// masterLogin is the backend login as the master user on behalf of user.
func (s *Server) masterLogin(user string) imapLogin {
	return imapLogin{authzid: user, authcid: s.opts.Master.User, password: s.opts.Master.Password}
}

// backendLogin opens a backend session: dial, optional STARTTLS, optional ID
// with the client's address, then "<client tag> AUTHENTICATE PLAIN" with
// login's credentials. Dovecot's untagged and tagged replies to it are
// written to the client verbatim, so the client sees the post-login
// CAPABILITY code. On failure nothing has been written to the client; a
// refusal of the user's own credentials is an *imapRefusal for the caller
// to pass on.
func (c *imapConn) backendLogin(ctx context.Context, tag string, login imapLogin, log *slog.Logger) (_ *imapSession, err error) {
	s := c.s
	b := s.opts.IMAPBackend
	moved, err := c.seat.login()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && moved {
			c.seat.loginFailed()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.backendLoginTimeout(login.own))
	defer cancel()
	start := time.Now()
	defer func() {
		berr := err
		if ref := (*imapRefusal)(nil); errors.As(err, &ref) && ref.credentials() {
			berr = nil // the backend works; the user's password was wrong
		}
		s.obs.BackendLogin("imap", time.Since(start), berr)
	}()

	var preface []byte
	if b.ClientIP == "proxy" {
		if preface, err = proxyHeader(c.raw.RemoteAddr(), c.raw.LocalAddr(), tlvVersion(b, c.tlsVersion())); err != nil {
			return nil, fmt.Errorf("%w: %v", errBackendUnavailable, err)
		}
	}
	conn, err := dialBackend(ctx, b, preface)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", errBackendUnavailable, b.Address, err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	// The callback gets its own copy: conn itself is replaced after STARTTLS,
	// and a deadline on the TCP connection reaches any TLS layer over it.
	tcp := conn
	stop := context.AfterFunc(ctx, func() { tcp.SetDeadline(time.Now()) })
	defer stop()

	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := readBackendLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: greeting: %v", errBackendUnavailable, err)
	}
	if !bytes.HasPrefix(greeting, []byte("* OK")) {
		return nil, fmt.Errorf("%w: unexpected greeting %q", errBackendUnavailable, truncate(greeting))
	}
	saslIR := hasCapability(greeting, "SASL-IR")

	if b.TLS == TLSStartTLS {
		if _, err := conn.Write([]byte(tagStartTLS + " STARTTLS\r\n")); err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", errBackendUnavailable, err)
		}
		if _, err := readTagged(br, tagStartTLS, nil); err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", errBackendUnavailable, err)
		}
		if br.Buffered() > 0 {
			return nil, fmt.Errorf("%w: starttls: data after the OK", errBackendUnavailable)
		}
		tc, err := backendHandshake(ctx, conn, b)
		if err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", errBackendUnavailable, err)
		}
		conn = tc
		br = bufio.NewReaderSize(tc, 4096)
	}

	var out bytes.Buffer
	if b.ClientIP == "id" {
		out.WriteString(c.idCommand())
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(login.authzid, login.authcid, login.password))
	if saslIR {
		fmt.Fprintf(&out, "%s AUTHENTICATE PLAIN %s\r\n", tag, ir)
	} else {
		fmt.Fprintf(&out, "%s AUTHENTICATE PLAIN\r\n", tag)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		return nil, fmt.Errorf("%w: write: %v", errBackendUnavailable, err)
	}
	if b.ClientIP == "id" {
		if st, err := readTagged(br, tagID, nil); err != nil {
			return nil, fmt.Errorf("%w: ID: %v", errBackendUnavailable, err)
		} else if st != "OK" {
			log.Warn("backend refused ID; the client address is not passed on", "status", st)
		}
	}

	// Read the login reply; untagged lines are kept for the client.
	var relay bytes.Buffer
	for sentIR := saslIR; ; {
		line, err := readBackendLine(br)
		if err != nil {
			return nil, fmt.Errorf("%w: login reply: %v", errBackendUnavailable, err)
		}
		switch {
		case bytes.HasPrefix(line, []byte("+")):
			if sentIR {
				return nil, fmt.Errorf("%w: unexpected continuation", errBackendUnavailable)
			}
			sentIR = true
			if _, err := conn.Write([]byte(ir + "\r\n")); err != nil {
				return nil, fmt.Errorf("%w: write: %v", errBackendUnavailable, err)
			}
		case bytes.HasPrefix(line, []byte("* ")):
			relay.Write(line)
			relay.WriteString("\r\n")
		case bytes.HasPrefix(line, []byte(tag+" ")):
			status, code := taggedStatus(line[len(tag)+1:])
			switch {
			case status == "OK":
				relay.Write(line)
				relay.WriteString("\r\n")
				conn.SetDeadline(time.Time{})
				if err := c.writeRaw(relay.Bytes()); err != nil {
					return nil, fmt.Errorf("%w: %v", errClientGone, err)
				}
				s.backendOK("imap")
				return &imapSession{backend: conn, br: br, log: log}, nil
			case login.own:
				relay.Write(line)
				relay.WriteString("\r\n")
				return nil, &imapRefusal{reply: relay.Bytes(), status: status, code: code}
			case code == "AUTHORIZATIONFAILED":
				return nil, fmt.Errorf("%w: %q", errBackendAuthz, truncate(line))
			case code == "PRIVACYREQUIRED":
				s.configProblem("imap", "refused the master login: "+truncate(line), imapHintPrivacy, true)
				return nil, fmt.Errorf("%w: master login refused over plaintext: %q", errBackendUnavailable, truncate(line))
			case code == "AUTHENTICATIONFAILED":
				// Dovecot says AUTHORIZATIONFAILED for an unknown mailbox once
				// the master credentials passed; this is the master passdb.
				s.configProblem("imap", "refused the master login: "+truncate(line), imapHintMaster, false)
				return nil, fmt.Errorf("%w: master login refused: %q", errBackendUnavailable, truncate(line))
			default:
				return nil, fmt.Errorf("%w: master login refused: %q", errBackendUnavailable, truncate(line))
			}
		default:
			return nil, fmt.Errorf("%w: unexpected line %q", errBackendUnavailable, truncate(line))
		}
	}
}

// idCommand is the ID command telling Dovecot who the client really is
// (honoured from login_trusted_networks), followed by the client's own fields.
func (c *imapConn) idCommand() string {
	var sb strings.Builder
	sb.WriteString(tagID + " ID (")
	add := func(k, v string) {
		if sb.Len() > len(tagID)+5 {
			sb.WriteByte(' ')
		}
		sb.WriteString(imapQuote(k))
		sb.WriteByte(' ')
		sb.WriteString(imapQuote(v))
	}
	if ip, port, ok := splitAddr(c.raw.RemoteAddr()); ok {
		add("x-originating-ip", ip)
		add("x-originating-port", port)
	}
	if ip, port, ok := splitAddr(c.raw.LocalAddr()); ok {
		add("x-connected-ip", ip)
		add("x-connected-port", port)
	}
	add("x-session-ext-id", c.id)
	// Dovecot 2.4 takes the end client's transport from here (2.3 ignores
	// it); logins happen only after TLS.
	transport := "insecure"
	if c.tlsVersion() != 0 {
		transport = "TLS"
	}
	add("x-client-transport", transport)
	for i := 0; i+1 < len(c.clientID); i += 2 {
		add(c.clientID[i], c.clientID[i+1])
	}
	sb.WriteString(")\r\n")
	return sb.String()
}

func splitAddr(a net.Addr) (ip, port string, ok bool) {
	if a == nil {
		return "", "", false
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "", "", false
	}
	return host, port, true
}

// readTagged reads lines up to the tagged reply for tag and returns its status.
func readTagged(br *bufio.Reader, tag string, untagged func([]byte)) (string, error) {
	for {
		line, err := readBackendLine(br)
		if err != nil {
			return "", err
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			st, _ := taggedStatus(line[len(tag)+1:])
			if st != "OK" && tag == tagStartTLS {
				return st, fmt.Errorf("refused: %q", truncate(line))
			}
			return st, nil
		}
		if untagged != nil {
			untagged(line)
		}
	}
}

// taggedStatus splits "OK [CODE ...] text" into its status and response code.
func taggedStatus(rest []byte) (status, code string) {
	f := bytes.Fields(rest)
	if len(f) == 0 {
		return "", ""
	}
	status = strings.ToUpper(string(f[0]))
	if len(f) > 1 && f[1][0] == '[' {
		code = strings.ToUpper(strings.TrimRight(strings.TrimPrefix(string(f[1]), "["), "]"))
	}
	return status, code
}

// hasCapability reports whether a greeting's [CAPABILITY ...] code lists capa.
func hasCapability(greeting []byte, capa string) bool {
	i := bytes.Index(bytes.ToUpper(greeting), []byte("[CAPABILITY "))
	if i < 0 {
		return false
	}
	rest := greeting[i+len("[CAPABILITY "):]
	if j := bytes.IndexByte(rest, ']'); j >= 0 {
		rest = rest[:j]
	}
	for _, f := range bytes.Fields(rest) {
		if strings.EqualFold(string(f), capa) {
			return true
		}
	}
	return false
}

// truncate shortens a backend line for a log message.
func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
