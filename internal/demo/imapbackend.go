package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// ErrUnknownUser is returned by Append for an address that has no mailbox.
var ErrUnknownUser = errors.New("demo: unknown user")

// IMAPBackend is an in-memory IMAP server that, like Dovecot with a master
// user, accepts only master-user logins: AUTHENTICATE PLAIN with
// authzid=user, authcid=master, or LOGIN "user*master" password.
// It speaks plain TCP and allows authentication without TLS.
type IMAPBackend struct {
	srv   *imapserver.Server
	ln    net.Listener
	auth  masterAuth
	users map[string]*imapmemserver.User // by lower-cased address
	done  chan struct{}                  // closed when Serve returns
	once  sync.Once
}

// StartIMAP serves IMAP on ln until ctx is cancelled or Close is called; it
// takes ownership of ln. Each user gets an INBOX holding one welcome message.
func StartIMAP(ctx context.Context, ln net.Listener, masterUser, masterPass string, users ...string) (*IMAPBackend, error) {
	if masterUser == "" || masterPass == "" || len(users) == 0 {
		ln.Close()
		return nil, errors.New("demo: imap: master user, password and at least one user required")
	}
	b := &IMAPBackend{
		ln:    ln,
		auth:  newMasterAuth(masterUser, masterPass, users),
		users: make(map[string]*imapmemserver.User, len(users)),
		done:  make(chan struct{}),
	}
	for _, addr := range users {
		// The password is never checked: sessions are created by imapSession.
		u := imapmemserver.NewUser(strings.ToLower(addr), "")
		if err := u.Create("INBOX", nil); err != nil {
			ln.Close()
			return nil, fmt.Errorf("demo: imap: create inbox: %w", err)
		}
		b.users[strings.ToLower(addr)] = u
		if err := b.Append(addr, "INBOX", welcomeMessage(addr)); err != nil {
			ln.Close()
			return nil, err
		}
	}
	b.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &imapSession{b: b}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:   {},
			imap.CapLiteralPlus: {},
			imap.CapUIDPlus:     {},
			imap.CapMove:        {},
			imap.CapNamespace:   {},
		},
		Logger:       debugLogger{component: "demo-imap"},
		InsecureAuth: true,
	})
	go func() {
		defer close(b.done)
		b.srv.Serve(idListener{ln})
	}()
	context.AfterFunc(ctx, func() { b.Close() })
	return b, nil
}

// Addr is the address the server listens on.
func (b *IMAPBackend) Addr() net.Addr { return b.ln.Addr() }

// Append stores msg in the user's mailbox, as a delivery agent would; IDLE
// sessions see it at once.
func (b *IMAPBackend) Append(user, mailbox string, msg []byte) error {
	u := b.users[strings.ToLower(user)]
	if u == nil {
		return ErrUnknownUser
	}
	r := literal{bytes.NewReader(msg)}
	if _, err := u.Append(mailbox, r, &imap.AppendOptions{}); err != nil {
		return fmt.Errorf("demo: imap: append: %w", err)
	}
	return nil
}

// Close stops the server and closes all connections. It is safe to call more
// than once.
func (b *IMAPBackend) Close() error {
	var err error
	b.once.Do(func() {
		err = b.srv.Close()
		b.ln.Close() // in case Serve had not registered it yet
		<-b.done
	})
	return err
}

// literal adapts a byte slice to imap.LiteralReader.
type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

// imapSession is an imapmemserver session for the user a master login
// authorized; UserSession is nil until then.
type imapSession struct {
	*imapmemserver.UserSession
	b *IMAPBackend
}

var _ imapserver.SessionSASL = (*imapSession)(nil)

// Login accepts "user*master" with the master password.
func (s *imapSession) Login(username, password string) error {
	return s.login("", username, password)
}

func (s *imapSession) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *imapSession) Authenticate(mech string) (sasl.Server, error) {
	if mech != sasl.Plain { // imapserver upper-cases mech
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	}
	return authFailedServer{sasl.NewPlainServer(s.login)}, nil
}

func (s *imapSession) login(authzid, authcid, password string) error {
	user, ok := s.b.auth.login(authzid, authcid, password)
	if !ok {
		return imapserver.ErrAuthFailed
	}
	s.UserSession = imapmemserver.NewUserSession(s.b.users[user])
	return nil
}

// authFailedServer turns go-sasl's errors for malformed input, which
// imapserver would answer with "NO [SERVERBUG]", into an authentication
// failure.
type authFailedServer struct{ sasl.Server }

func (a authFailedServer) Next(resp []byte) ([]byte, bool, error) {
	challenge, done, err := a.Server.Next(resp)
	var imapErr *imap.Error
	if err != nil && !errors.As(err, &imapErr) {
		err = imapserver.ErrAuthFailed
	}
	return challenge, done, err
}

func welcomeMessage(to string) []byte {
	const body = "Welcome to the mailgate demo.\r\n" +
		"\r\n" +
		"You are reading this through mailgate: your client authenticated with an\r\n" +
		"OAuth bearer token, mailgate checked it with the demo OpenID issuer and then\r\n" +
		"logged in to this in-memory IMAP server as a master user on your behalf.\r\n" +
		"Mail you send through mailgate's submission port to a demo address lands\r\n" +
		"in that address's INBOX.\r\n"
	return []byte("From: mailgate demo <postmaster@example.test>\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: Welcome to the mailgate demo\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <welcome." + strings.ReplaceAll(to, "@", ".") + "@demo.example.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" + body)
}
