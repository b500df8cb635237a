package sieve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// The backend login (proxy.BackendDialog), as Dovecot's own ManageSieve
// proxy does it: read the capability greeting, STARTTLS and read the
// capabilities again, XCLIENT with the client's address (from
// login_trusted_networks), then AUTHENTICATE "PLAIN" with an initial
// response, as the master user on behalf of the user or with the user's
// own password.

// xclientWarnEvery is the least time between two warnings that the backend
// does not offer XCLIENT.
const xclientWarnEvery = time.Minute

// dialog is the backend conversation of one login.
type dialog struct {
	f   *Front
	log *slog.Logger
}

// Login implements proxy.BackendDialog.
func (d *dialog) Login(ctx context.Context, conn net.Conn, a proxy.BackendAuth) (*proxy.BackendSession, error) {
	b := d.f.backend
	br := bufio.NewReaderSize(conn, 4096)
	caps, err := readCapabilities(br)
	if err != nil {
		return nil, unavailable("greeting", err)
	}
	d.f.caps.learn(caps)
	if b.TLS == proxy.TLSStartTLS {
		if conn, br, caps, err = startTLS(ctx, conn, br, b, caps); err != nil {
			return nil, unavailable("starttls", err)
		}
	}
	if err := saslProblem(caps); err != nil {
		return nil, err
	}
	xclient := d.xclient(caps)
	cmd := authenticateCommand(a.AuthzID, a.AuthcID, a.Password)
	if xclient {
		cmd = xclientCommand(a) + cmd
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return nil, unavailable("write", err)
	}
	if xclient {
		if err := d.readXCLIENT(br); err != nil {
			return nil, err
		}
	}
	resp, err := readResponse(br)
	if err != nil {
		return nil, unavailable("login reply", err)
	}
	if resp.status != "OK" {
		return nil, loginRefused(resp, a.Own)
	}
	return &proxy.BackendSession{Conn: conn, Reply: resp.raw, Pending: proxy.TakeBuffered(br)}, nil
}

// unavailable wraps err as an outage, unless it is a configuration problem.
func unavailable(what string, err error) error {
	if p := (*proxy.BackendProblem)(nil); errors.As(err, &p) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", proxy.ErrBackendUnavailable, what, err)
}

// startTLS runs STARTTLS (RFC 5804 §2.2) and reads the capabilities the
// server sends again over TLS.
func startTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, b proxy.Backend, caps capabilities) (
	net.Conn, *bufio.Reader, capabilities, error) {
	if !caps.starttls {
		return nil, nil, caps, problem("does not offer STARTTLS", hintStartTLS)
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return nil, nil, caps, err
	}
	resp, err := readResponse(br)
	switch {
	case err != nil:
		return nil, nil, caps, err
	case resp.status != "OK":
		return nil, nil, caps, fmt.Errorf("STARTTLS refused: %q", proxy.Truncate(resp.raw))
	case br.Buffered() > 0:
		return nil, nil, caps, errors.New("data after STARTTLS's OK")
	}
	tc, err := proxy.BackendHandshake(ctx, conn, b)
	if err != nil {
		return nil, nil, caps, err
	}
	br = bufio.NewReaderSize(tc, 4096)
	caps, err = readCapabilities(br)
	return tc, br, caps, err
}

// saslProblem checks that the backend offers PLAIN on this connection.
func saslProblem(caps capabilities) error {
	switch {
	case caps.hasMech(auth.MechPLAIN):
		return nil
	case len(caps.sasl) == 0:
		return problem("offers no SASL mechanism over mailgate's connection", hintPrivacy)
	}
	return problem("does not offer SASL PLAIN (only "+strings.Join(caps.sasl, " ")+")", hintPlain)
}

// xclient reports whether to send XCLIENT, and warns (at most every
// xclientWarnEvery) when it is configured but not offered.
func (d *dialog) xclient(caps capabilities) bool {
	if d.f.clientIP() != clientIPXCLIENT {
		return false
	}
	if caps.xclient {
		return true
	}
	now, last := time.Now().Unix(), d.f.lastXCLIENTWarn.Load()
	if now-last >= int64(xclientWarnEvery/time.Second) && d.f.lastXCLIENTWarn.CompareAndSwap(last, now) {
		d.log.Warn("sieve backend does not offer XCLIENT; the client address is not passed on", "fix", hintXCLIENT)
	}
	return false
}

// readXCLIENT reads the reply to XCLIENT; a refusal is logged.
func (d *dialog) readXCLIENT(br *bufio.Reader) error {
	resp, err := readResponse(br)
	switch {
	case err != nil:
		return unavailable("XCLIENT", err)
	case resp.status == "BYE":
		return unavailable("XCLIENT", fmt.Errorf("%q", proxy.Truncate(resp.raw)))
	case resp.status != "OK":
		d.log.Warn("sieve backend refused XCLIENT; the client address is not passed on",
			"reply", proxy.Truncate(bytes.TrimSpace(resp.raw)))
	}
	return nil
}

// xclientCommand tells Dovecot the client's address and port and the
// session id (unquoted atoms, as Dovecot's managesieve-login reads them).
func xclientCommand(a proxy.BackendAuth) string {
	var sb strings.Builder
	sb.WriteString("XCLIENT")
	if ap, err := netip.ParseAddrPort(fmt.Sprint(a.Remote)); err == nil {
		sb.WriteString(" ADDR=" + ap.Addr().Unmap().WithZone("").String())
		sb.WriteString(" PORT=" + strconv.Itoa(int(ap.Port())))
	}
	if isSessionID(a.SessionID) {
		sb.WriteString(" SESSION=" + a.SessionID)
	}
	return sb.String() + "\r\n"
}

// isSessionID reports whether id can go on the XCLIENT line as an atom.
func isSessionID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// authenticateCommand is AUTHENTICATE "PLAIN" with the initial response.
func authenticateCommand(authzid, authcid, password string) string {
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(authzid, authcid, password))
	return `AUTHENTICATE "PLAIN" "` + ir + `"` + "\r\n"
}

// loginRefused classifies the backend's refusal of AUTHENTICATE (Dovecot:
// NO "Authentication failed." for wrong credentials, NO "Authorization
// failed" for a mailbox the master user may not log in to, NO
// (ENCRYPT-NEEDED) or a plaintext refusal without TLS). A configuration
// problem is mailgate's, even with the user's own password; otherwise the
// user's own login gets the backend's NO verbatim (a *proxy.Refusal).
func loginRefused(resp *response, own bool) error {
	line := proxy.Truncate(bytes.TrimRight(resp.raw, "\r\n"))
	text := strings.ToLower(resp.text)
	switch {
	case resp.status == "":
		return fmt.Errorf("%w: unexpected reply to AUTHENTICATE: %q", proxy.ErrBackendUnavailable, line)
	case resp.code == "ENCRYPT-NEEDED" || strings.Contains(text, "plaintext authentication disallowed") ||
		strings.Contains(text, "disallowed on non-secure"):
		return problem("refused the login over mailgate's connection: "+line, hintPrivacy)
	case resp.status == "BYE":
		return fmt.Errorf("%w: %q", proxy.ErrBackendUnavailable, line)
	case own:
		return &proxy.Refusal{Reply: resp.raw, Credentials: resp.code == ""}
	case resp.code == "TRYLATER":
		return fmt.Errorf("%w: %q", proxy.ErrBackendUnavailable, line)
	case resp.code == "" && strings.HasPrefix(text, "authorization failed"):
		return fmt.Errorf("%w: %q", proxy.ErrMailboxRefused, line)
	case resp.code == "":
		// Dovecot says "Authorization failed" for an unknown mailbox once
		// the master credentials passed: this is most likely the master
		// passdb. Only suspected: an account that Dovecot's passdb refuses
		// for its own reasons could read the same, and a client chooses the
		// account.
		return &proxy.BackendProblem{Proto: proto, What: "refused the master login: " + line, Fix: proxy.HintDovecotMaster, Suspected: true}
	}
	return fmt.Errorf("%w: master login refused: %q", proxy.ErrBackendUnavailable, line)
}
