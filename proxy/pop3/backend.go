package pop3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// The conversation with Dovecot's POP3 login service, once the core has
// dialed it (PROXY header written, implicit TLS done): greeting, STLS,
// XCLIENT, AUTH PLAIN.

// dialog is one login's proxy.BackendDialog. Its zero value is not usable.
type dialog struct {
	f *Front
	c *proxy.Conn // the client's connection, for its log
}

var _ proxy.BackendDialog = (*dialog)(nil)

// Login implements proxy.BackendDialog. On success the session's Reply is
// Dovecot's "+OK Logged in." line, for the client.
func (d *dialog) Login(ctx context.Context, conn net.Conn, a proxy.BackendAuth) (*proxy.BackendSession, error) {
	b := d.f.backend
	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := expectOK(br, "greeting")
	if err != nil {
		return nil, err
	}
	if b.TLS == proxy.TLSStartTLS {
		if conn, br, err = backendSTLS(ctx, conn, br, b); err != nil {
			return nil, unavailable(err)
		}
	}
	if b.ClientIP == "xclient" {
		if err := d.xclient(conn, br, greeting, a); err != nil {
			return nil, err
		}
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(a.AuthzID, a.AuthcID, a.Password))
	if _, err := fmt.Fprintf(conn, "AUTH PLAIN %s\r\n", ir); err != nil {
		return nil, unavailable(fmt.Errorf("write: %w", err))
	}
	line, err := proxy.ReadBackendLine(br)
	if err != nil {
		return nil, unavailable(fmt.Errorf("login reply: %w", err))
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return nil, loginRefused(line, a.Own)
	}
	return &proxy.BackendSession{Conn: conn, Reply: withCRLF(line), Pending: proxy.TakeBuffered(br)}, nil
}

// expectOK reads a line that must be +OK (what names it in errors).
func expectOK(br *bufio.Reader, what string) ([]byte, error) {
	line, err := proxy.ReadBackendLine(br)
	if err != nil {
		return nil, unavailable(fmt.Errorf("%s: %w", what, err))
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return nil, unavailable(fmt.Errorf("%s: %q", what, proxy.Truncate(line)))
	}
	return bytes.Clone(line), nil
}

// backendSTLS upgrades the backend connection (RFC 2595 §4).
func backendSTLS(ctx context.Context, conn net.Conn, br *bufio.Reader, b proxy.Backend) (net.Conn, *bufio.Reader, error) {
	if _, err := conn.Write([]byte("STLS\r\n")); err != nil {
		return nil, nil, fmt.Errorf("stls: %w", err)
	}
	if _, err := expectOK(br, "stls"); err != nil {
		return nil, nil, err
	}
	if br.Buffered() > 0 {
		return nil, nil, fmt.Errorf("stls: data after the +OK")
	}
	tc, err := proxy.BackendHandshake(ctx, conn, b)
	if err != nil {
		return nil, nil, fmt.Errorf("stls: %w", err)
	}
	return tc, bufio.NewReaderSize(tc, 4096), nil
}

// xclient passes the client's address and mailgate's connection id on
// (Dovecot takes XCLIENT from login_trusted_networks and then greets with
// [XCLIENT]). Not offered, or refused: the login goes on with mailgate's
// address in Dovecot's log, and a warning in mailgate's.
func (d *dialog) xclient(conn net.Conn, br *bufio.Reader, greeting []byte, a proxy.BackendAuth) error {
	if !bytes.Contains(greeting, []byte("[XCLIENT]")) {
		d.f.warnNoXCLIENT(d.c, greeting)
		return nil
	}
	if _, err := conn.Write([]byte(xclientLine(a))); err != nil {
		return unavailable(fmt.Errorf("xclient: %w", err))
	}
	line, err := proxy.ReadBackendLine(br)
	if err != nil {
		return unavailable(fmt.Errorf("xclient: %w", err))
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		d.f.warnNoXCLIENT(d.c, line)
	}
	return nil
}

// xclientLine is "XCLIENT ADDR=<ip> PORT=<port> SESSION=<id>" with CRLF;
// an address that is not host:port (a unix socket) is left out.
func xclientLine(a proxy.BackendAuth) string {
	s := "XCLIENT"
	if a.Remote != nil {
		if ip, port, err := net.SplitHostPort(a.Remote.String()); err == nil {
			s += " ADDR=" + ip + " PORT=" + port
		}
	}
	if a.SessionID != "" {
		s += " SESSION=" + a.SessionID
	}
	return s + "\r\n"
}

// unavailable wraps err as a backend outage.
func unavailable(err error) error { return fmt.Errorf("%w: %w", proxy.ErrBackendUnavailable, err) }
