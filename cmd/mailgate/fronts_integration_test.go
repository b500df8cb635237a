package main

import (
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/testenv"
)

// TestIntegrationPOP3AndSieveServed: serve wires all four fronts. Through
// mailgate, a Sieve script is installed and activated over ManageSieve; a
// message delivered by LMTP is filed by it, read back through mailgate's
// IMAP, and listed over mailgate's POP3 — all against the real Dovecot.
func TestIntegrationPOP3AndSieveServed(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	cfg, d := realBackends(t, dc, testenv.SharedPostfix(t))
	a := runApp(t, cfg, slog.New(slog.DiscardHandler))
	tok, err := d.Issuer.MintToken("alice@example.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ir := base64.StdEncoding.EncodeToString(auth.EncodeXOAUTH2("alice@example.test", tok))
	clientTLS := &tls.Config{RootCAs: leafPool(t, a.certs.Certificate("127.0.0.1")), ServerName: "127.0.0.1"}
	subject := fmt.Sprintf("sieve-through-mailgate-%d", time.Now().UnixNano())

	sv := dialLines(t, a.addr("sieve.listen"))
	sv.until(t, "OK ")
	sv.send(t, "STARTTLS")
	sv.expect(t, "OK ")
	sv = sv.tls(t, clientTLS)
	sv.until(t, "OK ")
	sv.send(t, `AUTHENTICATE "XOAUTH2" "`+ir+`"`)
	sv.expect(t, `OK "Logged in."`)
	script := fmt.Sprintf("require [\"fileinto\"];\r\nif header :contains \"subject\" %q { fileinto \"Filed\"; }\r\n", subject)
	sv.send(t, fmt.Sprintf(`PUTSCRIPT "mailgate-test" {%d+}`, len(script))+"\r\n"+script)
	sv.expect(t, "OK")
	sv.send(t, `SETACTIVE "mailgate-test"`)
	sv.expect(t, "OK")
	sv.send(t, "LOGOUT")

	dc.DeliverLMTP(t, "alice@example.test", []byte("From: bob@example.test\r\nTo: alice@example.test\r\nSubject: "+subject+"\r\n\r\nfiled by sieve\r\n"))
	dc.WaitMessageIn(t, "alice@example.test", "Filed", subject, 10*time.Second)

	c, err := imapclient.DialTLS(a.addr("imap.listen_tls"), &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(xoauth2{"alice@example.test", tok}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Filed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	found, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(found.AllSeqNums()) != 1 {
		t.Fatalf("IMAP search in Filed through mailgate: %v, %v; want the filed message", found, err)
	}

	pop := dialTLSLines(t, a.addr("pop3.listen_tls"), clientTLS)
	pop.expect(t, "+OK")
	pop.send(t, "AUTH XOAUTH2 "+ir)
	pop.expect(t, "+OK Logged in.")
	pop.send(t, "STAT")
	pop.expect(t, "+OK ")
}
