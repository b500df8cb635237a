package auth

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// This file checks that Server works inside a real go-smtp server. go-smtp
// sends err.Error() to the client for any error that is not an
// *smtp.SMTPError (by type assertion), so callers wrap Server like smtpSASL.

type smtpSASL struct{ s *Server }

func (a smtpSASL) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := a.s.Next(resp)
	switch {
	case err == nil:
	case errors.Is(err, ErrInvalidCredentials), errors.Is(err, ErrThrottled):
		err = smtp.ErrAuthFailed
	case errors.Is(err, ErrMalformed):
		err = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed SASL message"}
	default:
		err = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	}
	return ch, done, err
}

type smtpBackend struct{}

func (smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &smtpSession{remote: c.Conn().RemoteAddr().String()}, nil
}

type smtpSession struct{ remote string }

func (s *smtpSession) AuthMechanisms() []string { return []string{MechXOAUTH2, MechOAUTHBEARER} }
func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	srv, err := NewServer(context.Background(), mech, &fakeAuth{}, s.remote, ChallengeOptions{Scope: "mail"})
	if err != nil {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return smtpSASL{srv}, nil
}
func (s *smtpSession) Reset()                               {}
func (s *smtpSession) Logout() error                        { return nil }
func (s *smtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *smtpSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *smtpSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }

var _ smtp.AuthSession = (*smtpSession)(nil)

func TestServerInGoSMTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() = %v", err)
	}
	srv := smtp.NewServer(smtpBackend{})
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	tests := []struct {
		name   string
		lines  []string // client lines after EHLO
		expect []string // reply prefixes, one per line
	}{
		{"xoauth2 ok", []string{"AUTH XOAUTH2 " + b64(EncodeXOAUTH2("alice@example.com", "good"))}, []string{"235 "}},
		{"oauthbearer no IR ok", []string{"AUTH OAUTHBEARER", b64(EncodeOAUTHBEARER("alice@example.com", "good"))}, []string{"334 ", "235 "}},
		{"xoauth2 refused, empty line", []string{"AUTH XOAUTH2 " + b64(EncodeXOAUTH2("a", "bad")), ""},
			[]string{"334 " + b64([]byte(`{"status":"400","schemes":"bearer","scope":"mail"}`)), "535 5.7.8"}},
		{"oauthbearer refused, AQ==", []string{"AUTH OAUTHBEARER " + b64(EncodeOAUTHBEARER("a", "bad")), "AQ=="},
			[]string{"334 " + b64([]byte(`{"status":"invalid_token","scope":"mail"}`)), "535 5.7.8"}},
		{"unavailable", []string{"AUTH XOAUTH2 " + b64(EncodeXOAUTH2("a", "down"))}, []string{"454 4.7.0 Temporary"}},
		{"malformed", []string{"AUTH XOAUTH2 " + b64([]byte("nonsense"))}, []string{"501 5.5.2"}},
		{"IR \"=\" is empty, so malformed", []string{"AUTH OAUTHBEARER ="}, []string{"501 5.5.2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("net.Dial() = %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			readReply(t, r, "220 ")
			io.WriteString(c, "EHLO test\r\n")
			readReply(t, r, "250 ")
			for i, l := range tt.lines {
				io.WriteString(c, l+"\r\n")
				readReply(t, r, tt.expect[i])
			}
		})
	}
}

// readReply reads one (possibly multi-line) SMTP reply and checks the
// prefix of its last line.
func readReply(t *testing.T, r *bufio.Reader, prefix string) {
	t.Helper()
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading reply: %v", err)
		}
		if len(l) >= 4 && l[3] == '-' {
			continue
		}
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("reply %q, want prefix %q", l, prefix)
		}
		return
	}
}
