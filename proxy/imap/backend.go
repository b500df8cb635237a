package imap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/proxy"
)

// dialog is the backend login of one IMAP client, for the login sequence
// (proxy.BackendDialog): greeting, optional STARTTLS, optional ID with the
// client's address, then "<client tag> AUTHENTICATE PLAIN" with the
// login's credentials. Dovecot's untagged and tagged replies to it are kept
// for the client (BackendSession.Reply), so that it sees the post-login
// CAPABILITY code. Nothing is written to the client here.
type dialog struct {
	b        proxy.Backend
	tag      string   // the client's tag, for the AUTHENTICATE
	clientID []string // the client's ID fields, passed on
	log      *slog.Logger
}

// Tags of mailgate's own commands to the backend. The backend answers in
// order, so they cannot be confused with the client's tag even if equal.
const (
	tagStartTLS = "mg0"
	tagID       = "mg1"
)

// Login implements proxy.BackendDialog.
func (d *dialog) Login(ctx context.Context, conn net.Conn, a proxy.BackendAuth) (*proxy.BackendSession, error) {
	unavailable := proxy.ErrBackendUnavailable
	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := proxy.ReadBackendLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: greeting: %v", unavailable, err)
	}
	if !bytes.HasPrefix(greeting, []byte("* OK")) {
		return nil, fmt.Errorf("%w: unexpected greeting %q", unavailable, proxy.Truncate(greeting))
	}
	saslIR := hasCapability(greeting, "SASL-IR")

	if d.b.TLS == proxy.TLSStartTLS {
		if _, err := conn.Write([]byte(tagStartTLS + " STARTTLS\r\n")); err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", unavailable, err)
		}
		if _, err := readTagged(br, tagStartTLS, nil); err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", unavailable, err)
		}
		if br.Buffered() > 0 {
			return nil, fmt.Errorf("%w: starttls: data after the OK", unavailable)
		}
		tc, err := proxy.BackendHandshake(ctx, conn, d.b)
		if err != nil {
			return nil, fmt.Errorf("%w: starttls: %v", unavailable, err)
		}
		conn = tc
		br = bufio.NewReaderSize(tc, 4096)
	}

	var out bytes.Buffer
	if d.b.ClientIP == "id" {
		out.WriteString(idCommand(a, d.clientID))
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodePLAIN(a.AuthzID, a.AuthcID, a.Password))
	if saslIR {
		fmt.Fprintf(&out, "%s AUTHENTICATE PLAIN %s\r\n", d.tag, ir)
	} else {
		fmt.Fprintf(&out, "%s AUTHENTICATE PLAIN\r\n", d.tag)
	}
	if _, err := conn.Write(out.Bytes()); err != nil {
		return nil, fmt.Errorf("%w: write: %v", unavailable, err)
	}
	if d.b.ClientIP == "id" {
		if st, err := readTagged(br, tagID, nil); err != nil {
			return nil, fmt.Errorf("%w: ID: %v", unavailable, err)
		} else if st != "OK" {
			d.log.Warn("backend refused ID; the client address is not passed on", "status", st)
		}
	}

	// Read the login reply; untagged lines are kept for the client.
	var reply bytes.Buffer
	for sentIR := saslIR; ; {
		line, err := proxy.ReadBackendLine(br)
		if err != nil {
			return nil, fmt.Errorf("%w: login reply: %v", unavailable, err)
		}
		switch {
		case bytes.HasPrefix(line, []byte("+")):
			if sentIR {
				return nil, fmt.Errorf("%w: unexpected continuation", unavailable)
			}
			sentIR = true
			if _, err := conn.Write([]byte(ir + "\r\n")); err != nil {
				return nil, fmt.Errorf("%w: write: %v", unavailable, err)
			}
		case bytes.HasPrefix(line, []byte("* ")):
			reply.Write(line)
			reply.WriteString("\r\n")
		case bytes.HasPrefix(line, []byte(d.tag+" ")):
			status, code := taggedStatus(line[len(d.tag)+1:])
			what := "refused the master login: " + proxy.Truncate(line)
			switch {
			case status == "OK":
				reply.Write(line)
				reply.WriteString("\r\n")
				return &proxy.BackendSession{Conn: conn, Reply: reply.Bytes(), Pending: proxy.TakeBuffered(br)}, nil
			case a.Own:
				reply.Write(line)
				reply.WriteString("\r\n")
				return nil, &proxy.Refusal{Reply: reply.Bytes(), Credentials: judgedCredentials(status, code)}
			case code == "AUTHORIZATIONFAILED":
				return nil, fmt.Errorf("%w: %q", proxy.ErrMailboxRefused, proxy.Truncate(line))
			case code == "PRIVACYREQUIRED":
				return nil, &proxy.BackendProblem{Proto: "imap", What: what, Fix: hintPrivacy}
			case code == "AUTHENTICATIONFAILED":
				// Dovecot says AUTHORIZATIONFAILED for an unknown mailbox once
				// the master credentials passed; this is the master passdb.
				// Logged with the fix, but Suspected: not kept for readiness.
				return nil, &proxy.BackendProblem{Proto: "imap", What: what, Fix: proxy.HintDovecotMaster, Suspected: true}
			default:
				return nil, fmt.Errorf("%w: master login refused: %q", unavailable, proxy.Truncate(line))
			}
		default:
			return nil, fmt.Errorf("%w: unexpected line %q", unavailable, proxy.Truncate(line))
		}
	}
}

// judgedCredentials reports whether the backend's tagged refusal of the
// user's own credentials judged them (wrong password, unknown user,
// expired...) rather than failing for another reason (unavailable, a
// protocol or configuration problem).
func judgedCredentials(status, code string) bool {
	if status != "NO" {
		return false
	}
	switch code {
	case "", "AUTHENTICATIONFAILED", "AUTHORIZATIONFAILED", "EXPIRED":
		return true
	}
	return false
}

// idCommand is the ID command telling Dovecot who the client really is
// (honoured from login_trusted_networks), followed by the client's own fields.
func idCommand(a proxy.BackendAuth, clientID []string) string {
	var sb strings.Builder
	sb.WriteString(tagID + " ID (")
	add := func(k, v string) {
		if sb.Len() > len(tagID)+5 {
			sb.WriteByte(' ')
		}
		sb.WriteString(quote(k))
		sb.WriteByte(' ')
		sb.WriteString(quote(v))
	}
	if ip, port, ok := proxy.SplitAddr(a.Remote); ok {
		add("x-originating-ip", ip)
		add("x-originating-port", port)
	}
	if ip, port, ok := proxy.SplitAddr(a.Local); ok {
		add("x-connected-ip", ip)
		add("x-connected-port", port)
	}
	add("x-session-ext-id", a.SessionID)
	// Dovecot 2.4 takes the end client's transport from here (2.3 ignores
	// it); logins happen only after TLS.
	transport := "insecure"
	if a.ClientTLS != 0 {
		transport = "TLS"
	}
	add("x-client-transport", transport)
	for i := 0; i+1 < len(clientID); i += 2 {
		add(clientID[i], clientID[i+1])
	}
	sb.WriteString(")\r\n")
	return sb.String()
}

// readTagged reads lines up to the tagged reply for tag and returns its status.
func readTagged(br *bufio.Reader, tag string, untagged func([]byte)) (string, error) {
	for {
		line, err := proxy.ReadBackendLine(br)
		if err != nil {
			return "", err
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			st, _ := taggedStatus(line[len(tag)+1:])
			if st != "OK" && tag == tagStartTLS {
				return st, fmt.Errorf("refused: %q", proxy.Truncate(line))
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
