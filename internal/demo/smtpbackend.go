package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	// MaxMessageBytes is the SMTP backend's message size limit (SIZE).
	MaxMessageBytes = 25 << 20
	smtpTimeout     = 5 * time.Minute // per command line, and for a whole DATA body
)

var (
	errSMTPAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errSMTPDelivery     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Delivery failed, try again later"}
)

// SMTPBackend is a submission server that, like Postfix with Dovecot SASL and
// a master user, accepts only AUTH PLAIN with authzid=user, authcid=master
// (or "user*master" as the login name), requires AUTH before MAIL, insists on
// MAIL FROM being the authenticated address
// (reject_authenticated_sender_login_mismatch) and accepts only the demo
// mailboxes as recipients. It speaks plain TCP and allows AUTH without TLS.
type SMTPBackend struct {
	srv  *smtp.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returns
	once sync.Once
}

// StartSMTP serves SMTP on ln until ctx is cancelled or Close is called; it
// takes ownership of ln. users are the accepted logins and recipients; each
// accepted message is passed to deliver once per recipient, with a Received
// header prepended. A deliver error answers the DATA command with 451.
func StartSMTP(ctx context.Context, ln net.Listener, masterUser, masterPass string, deliver func(rcpt string, msg []byte) error, users ...string) (*SMTPBackend, error) {
	if masterUser == "" || masterPass == "" || deliver == nil || len(users) == 0 {
		ln.Close()
		return nil, errors.New("demo: smtp: master user, password, deliver and at least one user required")
	}
	auth := newMasterAuth(masterUser, masterPass, users)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{conn: c, auth: auth, deliver: deliver}, nil
	}))
	srv.Domain = "demo"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = MaxMessageBytes
	srv.ReadTimeout, srv.WriteTimeout = smtpTimeout, smtpTimeout
	srv.ErrorLog = debugLogger{component: "demo-smtp"}

	b := &SMTPBackend{srv: srv, ln: ln, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		srv.Serve(ln)
	}()
	context.AfterFunc(ctx, func() { b.Close() })
	return b, nil
}

// Addr is the address the server listens on.
func (b *SMTPBackend) Addr() net.Addr { return b.ln.Addr() }

// Close stops the server and closes all connections. It is safe to call more
// than once.
func (b *SMTPBackend) Close() error {
	var err error
	b.once.Do(func() {
		err = b.srv.Close()
		b.ln.Close() // in case Serve had not registered it yet
		<-b.done
	})
	return err
}

// smtpSession is one SMTP connection; user is empty until AUTH succeeds.
type smtpSession struct {
	conn    *smtp.Conn
	auth    masterAuth
	deliver func(rcpt string, msg []byte) error

	user  string
	rcpts []string
}

var _ smtp.AuthSession = (*smtpSession)(nil)

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return smtpAuthFailedServer{sasl.NewPlainServer(func(authzid, authcid, password string) error {
		user, ok := s.auth.login(authzid, authcid, password)
		if !ok {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	})}, nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return errSMTPAuthRequired
	}
	if !strings.EqualFold(from, s.user) {
		return &smtp.SMTPError{
			Code:         553,
			EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message:      fmt.Sprintf("<%s>: Sender address rejected: not owned by user %s", from, s.user),
		}
	}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if !s.auth.known(to) {
		return &smtp.SMTPError{
			Code:         550,
			EnhancedCode: smtp.EnhancedCode{5, 1, 1},
			Message:      fmt.Sprintf("<%s>: Recipient address rejected: User unknown", to),
		}
	}
	s.rcpts = append(s.rcpts, strings.ToLower(to))
	return nil
}

// Data reads the whole message (at most MaxMessageBytes) and delivers it.
func (s *smtpSession) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err // ErrDataTooLarge is an *smtp.SMTPError; other errors mean the client is gone
	}
	for _, rcpt := range s.rcpts {
		msg := append([]byte(s.received(rcpt)), body...)
		if err := s.deliver(rcpt, msg); err != nil {
			slog.Warn("demo smtp: delivery failed", "rcpt", rcpt, "err", err)
			return errSMTPDelivery
		}
	}
	return nil
}

// received is a Postfix-style trace header for one recipient.
func (s *smtpSession) received(rcpt string) string {
	return fmt.Sprintf("Received: from %s (%s)\r\n"+
		"\t(Authenticated sender: %s)\r\n"+
		"\tby demo with ESMTPA\r\n"+
		"\tfor <%s>; %s\r\n",
		s.conn.Hostname(), s.conn.Conn().RemoteAddr(), s.user, rcpt, time.Now().Format(time.RFC1123Z))
}

func (s *smtpSession) Reset() { s.rcpts = nil }

func (s *smtpSession) Logout() error { return nil }

// smtpAuthFailedServer turns go-sasl's errors for malformed input, which
// go-smtp would answer with a temporary 454, into 535 5.7.8.
type smtpAuthFailedServer struct{ sasl.Server }

func (a smtpAuthFailedServer) Next(resp []byte) ([]byte, bool, error) {
	challenge, done, err := a.Server.Next(resp)
	var smtpErr *smtp.SMTPError
	if err != nil && !errors.As(err, &smtpErr) {
		err = smtp.ErrAuthFailed
	}
	return challenge, done, err
}
