// Package demo runs in-process stand-ins for everything mailgate talks to, so
// that "mailgate demo" works without Dovecot, Postfix or an OpenID provider:
//
//   - an IMAP server accepting Dovecot-style master-user logins
//     (AUTHENTICATE PLAIN with authzid, RFC 4616; LOGIN "user*master"),
//     with ID (RFC 2971) and in-memory mailboxes;
//   - an SMTP submission server accepting master-user AUTH PLAIN
//     (RFC 4954) and delivering into those mailboxes;
//   - an OpenID issuer serving discovery, JWKS (RFC 7517), userinfo and
//     introspection (RFC 7662) for RS256 JWT access tokens (RFC 9068) it mints.
//
// All servers listen on plain TCP on loopback and are for demonstration only.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"
)

const (
	// DemoUser is the address the demo token is minted for.
	DemoUser = "demo@example.test"
	// SecondUser is a second demo mailbox, to send mail to.
	SecondUser = "alice@example.test"
	// DemoMasterUser is the master user name mailgate logs in with.
	DemoMasterUser = "mailgate"
	// TokenTTL is how long the demo token is valid.
	TokenTTL = 24 * time.Hour
)

// Demo is a running set of demo backends. The backends stop when the context
// given to Start is cancelled or Close is called.
type Demo struct {
	IMAPAddr, SMTPAddr string // host:port on 127.0.0.1, plain TCP
	Issuer             *Issuer
	IMAP               *IMAPBackend
	SMTP               *SMTPBackend
	MasterUser         string
	MasterPassword     string // random per Start
	User               string // DemoUser
	Token              string // access token for User, valid for TokenTTL
}

// Start starts the IMAP, SMTP and OpenID backends on 127.0.0.1 with random
// ports, for the mailboxes DemoUser and SecondUser; mail submitted over SMTP
// is delivered to the recipients' INBOX.
func Start(ctx context.Context) (d *Demo, err error) {
	var lns [3]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			for _, ln := range lns[:i] {
				ln.Close()
			}
			return nil, fmt.Errorf("demo: listen: %w", err)
		}
	}
	imapLn, smtpLn, issuerLn := lns[0], lns[1], lns[2]

	d = &Demo{
		MasterUser:     DemoMasterUser,
		MasterPassword: rand.Text(),
		User:           DemoUser,
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	// Each Start* owns its listener, also on error; close the rest here.
	if d.IMAP, err = StartIMAP(ctx, imapLn, d.MasterUser, d.MasterPassword, DemoUser, SecondUser); err != nil {
		smtpLn.Close()
		issuerLn.Close()
		return d, err
	}
	deliver := func(rcpt string, msg []byte) error { return d.IMAP.Append(rcpt, "INBOX", msg) }
	if d.SMTP, err = StartSMTP(ctx, smtpLn, d.MasterUser, d.MasterPassword, deliver, DemoUser, SecondUser); err != nil {
		issuerLn.Close()
		return d, err
	}
	if d.Issuer, err = StartIssuer(issuerLn); err != nil {
		return d, err
	}
	if d.Token, err = d.Issuer.MintToken(DemoUser, TokenTTL); err != nil {
		return d, err
	}
	d.IMAPAddr, d.SMTPAddr = d.IMAP.Addr().String(), d.SMTP.Addr().String()
	context.AfterFunc(ctx, func() { d.Close() })
	return d, nil
}

// Close stops all backends. It is safe to call more than once.
func (d *Demo) Close() error {
	var errs []error
	if d.Issuer != nil {
		errs = append(errs, d.Issuer.Close())
	}
	if d.SMTP != nil {
		errs = append(errs, d.SMTP.Close())
	}
	if d.IMAP != nil {
		errs = append(errs, d.IMAP.Close())
	}
	return errors.Join(errs...)
}
