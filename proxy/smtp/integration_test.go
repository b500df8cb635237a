package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/internal/proxytest"
	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// Integration tests: mailgate's submission in front of a real Postfix 3.7
// (DMS-like submission services, Dovecot SASL,
// reject_authenticated_sender_login_mismatch, delivery over LMTP into
// Dovecot's Maildirs), with tokens from a real OpenID provider (Ory Hydra)
// checked by the production userinfo validator.

type smtpIntegration struct {
	dc       *testenv.Dovecot
	pf       *testenv.Postfix
	idp      *testenv.Hydra
	tp       *smtpTestProxy
	certFile string // mailgate's certificate, for curl
}

// newSMTPIntegration starts mailgate in front of pf with the given backend
// settings (Address and TLSConfig are filled in from pf when empty).
func newSMTPIntegration(t *testing.T, pf *testenv.Postfix, b proxy.Backend, mod func(*proxy.Options, *Options)) *smtpIntegration {
	t.Helper()
	dc, idp := pf.Dovecot, testenv.SharedHydra(t)
	if b.Address == "" {
		b.Address = pf.SubmissionAddr
		if b.TLS == proxy.TLSImplicit {
			b.Address = pf.SubmissionsAddr
		}
	}
	if b.TLSConfig == nil {
		b.TLSConfig = pf.TLSConfig()
	}
	opts := proxy.Options{
		Authenticator: auth.TokenAuthenticator{
			Validator: auth.UserinfoValidator{URL: idp.UserinfoURL, Timeout: 2 * time.Second},
			Policy:    auth.Policy{UsernameClaim: "email"},
			Source:    "userinfo",
		},
		Master:    proxy.Master{User: dc.MasterUser, Password: dc.MasterPassword},
		Challenge: auth.ChallengeOptions{OpenIDConfiguration: idp.DiscoveryURL, Scope: "openid email"},
	}
	fo := Options{Backend: b, Hostname: "mailgate.test", EnforceSender: true}
	if mod != nil {
		mod(&opts, &fo)
	}
	tp := newSMTPTestProxy(t, opts, fo)
	it := &smtpIntegration{dc: dc, pf: pf, idp: idp, tp: tp}

	der := tp.serverTLS.Certificates[0].Certificate[0]
	it.certFile = filepath.Join(t.TempDir(), "mailgate.pem")
	if err := os.WriteFile(it.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return it
}

// token mints a token for user and makes sure it never shows up in
// mailgate's log.
func (it *smtpIntegration) token(t *testing.T, user string) string {
	t.Helper()
	tok := it.idp.MintToken(t, user, testenv.TokenOptions{})
	t.Cleanup(func() {
		for _, secret := range []string{tok, it.dc.MasterPassword} {
			if strings.Contains(it.tp.logs.String(), secret) {
				t.Errorf("a token or the master password appears in mailgate's log")
			}
		}
	})
	return tok
}

// smtpClient connects go-smtp's client to mailgate (implicit TLS or
// STARTTLS) and authenticates.
func (it *smtpIntegration) smtpClient(t *testing.T, implicit bool, mech, user, token string) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	if implicit {
		c, err = smtp.DialTLS(it.tp.tlsAddr, it.tp.clientTLS)
	} else {
		c, err = smtp.DialStartTLS(it.tp.plainAddr, it.tp.clientTLS)
	}
	if err != nil {
		t.Fatalf("dial mailgate: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(proxytest.OAuthClient{Mech: mech, User: user, Token: token}); err != nil {
		t.Fatalf("Auth(%s) = %v", mech, err)
	}
	return c
}

// send submits msg and returns the text of the final reply.
func smtpSend(t *testing.T, c *smtp.Client, from, to string, body io.Reader) (string, error) {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return "", err
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(w, body); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

func smtpTestMessage(subject string) []byte {
	return []byte(fmt.Sprintf("From: alice@example.test\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%d.smtp@mailgate.test>\r\n\r\nbody of %s\r\n.line with a leading dot\r\n",
		subject, time.Now().UnixNano(), subject))
}

// queueID is the Postfix queue id in "2.0.0 Ok: queued as 4Xyz".
func queueID(t *testing.T, reply string) string {
	t.Helper()
	_, id, ok := strings.Cut(reply, "queued as ")
	if !ok || id == "" {
		t.Fatalf("reply %q has no queue id", reply)
	}
	return strings.Fields(id)[0]
}

// readViaIMAP finds the message with subject in user's INBOX, read over
// Dovecot's IMAPS as the master user on behalf of user, and returns it.
// (The IMAP front's own integration tests read messages through mailgate.)
func (it *smtpIntegration) readViaIMAP(t *testing.T, user, subject string) []byte {
	t.Helper()
	c, err := imapclient.DialTLS(it.dc.IMAPSAddr, &imapclient.Options{TLSConfig: it.dc.TLSConfig()})
	if err != nil {
		t.Fatalf("imapclient.DialTLS() = %v", err)
	}
	defer c.Close()
	if err := c.Authenticate(sasl.NewPlainClient(user, it.dc.MasterUser, it.dc.MasterPassword)); err != nil {
		t.Fatalf("IMAP Authenticate = %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT = %v", err)
	}
	data, err := c.Search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil {
		t.Fatalf("SEARCH = %v", err)
	}
	nums := data.AllSeqNums()
	if len(nums) != 1 {
		t.Fatalf("SEARCH subject %q found %v, want one message", subject, nums)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(nums...), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH = %v, %v", msgs, err)
	}
	c.Logout().Wait()
	return msgs[0].FindBodySection(&imap.FetchItemBodySection{})
}

// TestIntegrationSMTPSubmit: a message submitted on 465 and on 587, relayed
// to Postfix's submission (STARTTLS) and submissions (implicit TLS), lands in
// the Maildir, is read back over IMAP, and Postfix logged the
// user as the SASL user and named them in the Received header.
func TestIntegrationSMTPSubmit(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	for _, tt := range []struct {
		name     string
		implicit bool // mailgate's listener
		backend  proxy.TLSMode
		mech     string
	}{
		{"465 to submission starttls", true, proxy.TLSStartTLS, "XOAUTH2"},
		{"587 to submissions implicit", false, proxy.TLSImplicit, "OAUTHBEARER"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			it := newSMTPIntegration(t, pf, proxy.Backend{TLS: tt.backend}, nil)
			token := it.token(t, "alice@example.test")
			mark := pf.Log.Mark()
			subject := proxytest.UniqueSubject("submit")
			c := it.smtpClient(t, tt.implicit, tt.mech, "alice@example.test", token)
			reply, err := smtpSend(t, c, "alice@example.test", "alice@example.test", bytes.NewReader(smtpTestMessage(subject)))
			if err != nil {
				t.Fatalf("send = %v", err)
			}
			qid := queueID(t, reply)
			if err := c.Quit(); err != nil {
				t.Fatalf("Quit() = %v", err)
			}
			line := pf.Log.WaitSince(t, mark, qid+": client=", 10*time.Second)
			if !strings.Contains(line, "sasl_method=PLAIN, sasl_username=alice@example.test") {
				t.Fatalf("Postfix log line %q, want sasl_username=alice@example.test", line)
			}
			file := it.dc.WaitMessage(t, "alice@example.test", subject, 15*time.Second)
			if !bytes.Contains(file, []byte("(Authenticated sender: alice@example.test)")) {
				t.Fatalf("delivered message lacks the Received header naming alice:\n%s", file)
			}
			got := it.readViaIMAP(t, "alice@example.test", subject)
			if !bytes.Contains(got, []byte("\r\n.line with a leading dot\r\n")) || !bytes.Contains(got, []byte("body of "+subject)) {
				t.Fatalf("message read through IMAP:\n%s", got)
			}
		})
	}
}

// TestIntegrationSMTPLoginModes: both backend logins reach Postfix as alice;
// XCLIENT also passes the client's address.
//
// With XCLIENT ADDR before the master AUTH, Postfix hands Dovecot the
// client's address, so the master passdb must not be limited to mailgate's
// address (allow_real_nets): that case runs against a Dovecot whose master
// user may log in from anywhere, like a stock DMS dovecot-masters.cf.
func TestIntegrationSMTPLoginModes(t *testing.T) {
	shared := testenv.SharedPostfix(t)
	for _, tt := range []struct {
		name    string
		backend proxy.Backend
		method  string // Postfix's sasl_method
	}{
		{"master", proxy.Backend{TLS: proxy.TLSStartTLS, Login: "master"}, "PLAIN"},
		{"master with xclient addr", proxy.Backend{TLS: proxy.TLSStartTLS, Login: "master", ClientIP: "xclient"}, "PLAIN"},
		{"xclient", proxy.Backend{TLS: proxy.TLSStartTLS, Login: "xclient", ClientIP: "xclient"}, "XCLIENT"},
		{"xclient implicit tls", proxy.Backend{TLS: proxy.TLSImplicit, Login: "xclient"}, "XCLIENT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pf := shared
			if tt.backend.Login == "master" && tt.backend.ClientIP == "xclient" {
				dc := testenv.StartDovecot(t, testenv.DovecotOptions{MasterAnyNet: true})
				pf = testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
			}
			it := newSMTPIntegration(t, pf, tt.backend, nil)
			token := it.token(t, "alice@example.test")
			mark := pf.Log.Mark()
			subject := proxytest.UniqueSubject("mode")
			// From 127.0.0.5, so that XCLIENT ADDR is visibly the client's.
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 5)}}
			raw, err := d.Dial("tcp", it.tp.tlsAddr)
			if err != nil {
				t.Fatalf("dial from 127.0.0.5: %v", err)
			}
			c := smtp.NewClient(tls.Client(raw, it.tp.clientTLS))
			defer c.Close()
			if err := c.Auth(proxytest.OAuthClient{Mech: "XOAUTH2", User: "alice@example.test", Token: token}); err != nil {
				t.Fatalf("Auth = %v", err)
			}
			reply, err := smtpSend(t, c, "alice@example.test", "bob@example.test", bytes.NewReader(smtpTestMessage(subject)))
			if err != nil {
				t.Fatalf("send = %v", err)
			}
			c.Quit()
			line := pf.Log.WaitSince(t, mark, queueID(t, reply)+": client=", 10*time.Second)
			if !strings.Contains(line, "sasl_method="+tt.method+", sasl_username=alice@example.test") {
				t.Fatalf("Postfix log line %q, want sasl_method=%s, sasl_username=alice@example.test", line, tt.method)
			}
			if wantAddr := tt.backend.ClientIP == "xclient"; strings.Contains(line, "[127.0.0.5]") != wantAddr {
				t.Fatalf("Postfix log line %q: client 127.0.0.5 shown = %v, want %v", line, !wantAddr, wantAddr)
			}
			it.dc.WaitMessage(t, "bob@example.test", subject, 15*time.Second)
		})
	}
}

// TestIntegrationSMTPSessionReuse: several messages and an RSET in one
// session. go-smtp's client says EHLO again after RSET; Postfix keeps the
// login (AUTH or XCLIENT) across it.
func TestIntegrationSMTPSessionReuse(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	for _, login := range []string{"master", "xclient"} {
		t.Run(login, func(t *testing.T) {
			it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS, Login: login}, nil)
			mark := pf.Log.Mark()
			c := it.smtpClient(t, false, "XOAUTH2", "alice@example.test", it.token(t, "alice@example.test"))
			var subjects []string
			for i := 0; i < 3; i++ {
				if i == 1 {
					if err := c.Mail("alice@example.test", nil); err != nil {
						t.Fatalf("Mail() = %v", err)
					}
					if err := c.Reset(); err != nil {
						t.Fatalf("Reset() = %v", err)
					}
				}
				subjects = append(subjects, proxytest.UniqueSubject("reuse-"+login+"-"+strconv.Itoa(i)))
				if _, err := smtpSend(t, c, "alice@example.test", "bob@example.test", bytes.NewReader(smtpTestMessage(subjects[i]))); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			if err := c.Quit(); err != nil {
				t.Fatalf("Quit() = %v", err)
			}
			for _, s := range subjects {
				it.dc.WaitMessage(t, "bob@example.test", s, 15*time.Second)
			}
			// One backend session: three messages and the client's RSET.
			line := pf.Log.WaitSince(t, mark, "mail=4 rcpt=3 data=3 rset=1", 10*time.Second)
			if !strings.Contains(line, "disconnect from") {
				t.Fatalf("Postfix session summary %q", line)
			}
		})
	}
}

// TestIntegrationSMTPSenderChecks: mailgate refuses a forged MAIL FROM
// itself; with enforce_sender off, Postfix's own check refuses it and its
// reply reaches the client verbatim.
func TestIntegrationSMTPSenderChecks(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	t.Run("enforced by mailgate", func(t *testing.T) {
		it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
		c := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", it.token(t, "alice@example.test"))
		mark := pf.Log.Mark()
		_, err := smtpSend(t, c, "bob@example.test", "alice@example.test", strings.NewReader("Subject: forged\r\n\r\nx\r\n"))
		if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 553 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Fatalf("forged MAIL FROM = %v, want 553 5.7.1", err)
		}
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(pf.Log.Since(mark), "bob@example.test") {
			t.Fatalf("Postfix saw the forged sender:\n%s", pf.Log.Since(mark))
		}
	})
	t.Run("enforced by postfix", func(t *testing.T) {
		it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, func(o *proxy.Options, so *Options) { so.EnforceSender = false })
		c := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", it.token(t, "alice@example.test"))
		_, err := smtpSend(t, c, "bob@example.test", "alice@example.test", strings.NewReader("Subject: forged\r\n\r\nx\r\n"))
		se, ok := err.(*smtp.SMTPError)
		if !ok || se.Code != 553 || se.Message != "<bob@example.test>: Sender address rejected: not owned by user alice@example.test" {
			t.Fatalf("forged MAIL FROM = %#v, want Postfix's 553 verbatim", err)
		}
	})
}

// TestIntegrationSMTPLargeMessage relays 50 MB and reports the memory the
// test process (mailgate and the streaming client) needed for it.
func TestIntegrationSMTPLargeMessage(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{ExtraMain: "message_size_limit = 104857600"})
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	token := it.token(t, "alice@example.test")
	subject := proxytest.UniqueSubject("large")
	const size = 50 << 20
	header := "From: alice@example.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n"

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	hwmBefore := vmHWM()
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	c := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", token)
	start := time.Now()
	reply, err := smtpSend(t, c, "alice@example.test", "alice@example.test",
		io.MultiReader(strings.NewReader(header), proxytest.NewMessageReader(size)))
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("send 50 MB = %v", err)
	}
	c.Quit()
	heapGrowth := int64(peak) - int64(base.HeapInuse)
	t.Logf("50 MB relayed in %v (%s); test process: peak HeapInuse %.1f MiB (+%.1f MiB over the %.1f MiB before), VmHWM %s before, %s after",
		elapsed.Round(time.Millisecond), reply, mib(peak), float64(heapGrowth)/(1<<20), mib(base.HeapInuse), hwmBefore, vmHWM())
	if heapGrowth > 24<<20 {
		t.Errorf("heap grew by %.1f MiB while relaying 50 MB: the body is buffered somewhere", float64(heapGrowth)/(1<<20))
	}

	file := it.dc.WaitMessage(t, "alice@example.test", subject, 60*time.Second)
	if got, want := bodySHA(bytes.NewReader(file)), bodySHA(proxytest.NewMessageReader(size)); !bytes.Equal(got, want) {
		t.Fatalf("the stored body (message file of %d bytes) differs from the one sent", len(file))
	}
}

// bodySHA is the sha256 of what follows the first blank line of r, with
// CRLF line ends turned into LF (Dovecot's Maildir may store either).
func bodySHA(r io.Reader) []byte {
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	inBody := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			h.Write(line)
			continue
		}
		if l := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")); inBody {
			h.Write(l)
			if len(line) > 0 && line[len(line)-1] == '\n' {
				h.Write([]byte("\n"))
			}
		} else if len(l) == 0 && err == nil {
			inBody = true
		}
		if err != nil {
			return h.Sum(nil)
		}
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// vmHWM is the test process's peak resident set size from /proc/self/status.
func vmHWM() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestIntegrationSMTPClientKilledMidData: a client that vanishes in the
// middle of DATA leaves nothing in the Maildir.
func TestIntegrationSMTPClientKilledMidData(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	token := it.token(t, "alice@example.test")
	mark := pf.Log.Mark()
	subject := proxytest.UniqueSubject("killed")
	c := proxytest.DialTLS(t, it.tp.tlsAddr, it.tp.clientTLS)
	c.SMTPExpect("220 ")
	c.SMTPEHLO()
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "235 ")
	c.SMTPCmd("MAIL FROM:<alice@example.test>", "250 ")
	c.SMTPCmd("RCPT TO:<alice@example.test>", "250 ")
	c.SMTPCmd("DATA", "354 ")
	c.C.Write([]byte("Subject: " + subject + "\r\n\r\n"))
	io.CopyN(c.C, proxytest.NewMessageReader(4<<20), 2<<20)
	// Like a killed process: the kernel resets the connection.
	c.C.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn).SetLinger(0)
	c.C.(interface{ NetConn() net.Conn }).NetConn().Close()
	pf.Log.WaitSince(t, mark, "lost connection after DATA", 15*time.Second)

	// A later message from the same user is delivered; the cut one is not.
	control := proxytest.UniqueSubject("after-killed")
	sc := it.smtpClient(t, true, "XOAUTH2", "alice@example.test", token)
	if _, err := smtpSend(t, sc, "alice@example.test", "alice@example.test", bytes.NewReader(smtpTestMessage(control))); err != nil {
		t.Fatalf("send = %v", err)
	}
	it.dc.WaitMessage(t, "alice@example.test", control, 15*time.Second)
	if _, found := it.dc.FindMessage("alice@example.test", subject); found {
		t.Fatal("the message cut off in DATA was delivered")
	}
}

// TestIntegrationSMTPRefusedTokens: refused tokens get the RFC 7628
// challenge and 535 from mailgate, and Postfix never hears of them.
func TestIntegrationSMTPRefusedTokens(t *testing.T) {
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	expired := it.idp.MintToken(t, "alice@example.test", testenv.TokenOptions{Expired: true})
	bobs := it.idp.MintToken(t, "bob@example.test", testenv.TokenOptions{})
	mark := pf.Log.Mark()
	for name, tok := range map[string]string{"garbage": "not-a-token", "expired": expired, "other user": bobs} {
		t.Run(name, func(t *testing.T) {
			c := it.tp.dialSubmissions(t)
			c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", tok), "334 ")
			c.SMTPCmd("", "535 5.7.8")
		})
	}
	if log := pf.Log.Since(mark); strings.Contains(log, "connect from") {
		t.Fatalf("Postfix was contacted:\n%s", log)
	}
}

// TestIntegrationSMTPBackendDown: no backend at login gives 454; a backend
// that goes away in the session gives 4xx, never 5xx.
func TestIntegrationSMTPBackendDown(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	pf := testenv.StartPostfix(t, dc, testenv.PostfixOptions{})
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	token := it.token(t, "alice@example.test")
	c := it.tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "235 ")
	if err := pf.Stop(); err != nil {
		t.Fatalf("stop postfix: %v", err)
	}
	c.Send("MAIL FROM:<alice@example.test>")
	if code, lines := c.SMTPReply(); code/100 != 4 {
		t.Fatalf("MAIL with Postfix gone = %d %q, want 4xx", code, lines)
	}
	c = it.tp.dialSubmissions(t)
	c.SMTPCmd("AUTH XOAUTH2 "+proxytest.XOAUTH2("alice@example.test", token), "454 4.7.0")
}

// TestIntegrationSMTPCurl: curl --oauth2-bearer submits on 465 (smtps) and
// 587 (smtp with --ssl-reqd); curl 7.88 uses OAUTHBEARER.
func TestIntegrationSMTPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("curl not installed")
		}
		t.Skip("curl not installed")
	}
	pf := testenv.SharedPostfix(t)
	it := newSMTPIntegration(t, pf, proxy.Backend{TLS: proxy.TLSStartTLS}, nil)
	token := it.token(t, "alice@example.test")
	for name, url := range map[string]string{
		"465": "smtps://127.0.0.1:" + port(it.tp.tlsAddr),
		"587": "smtp://127.0.0.1:" + port(it.tp.plainAddr),
	} {
		t.Run(name, func(t *testing.T) {
			subject := proxytest.UniqueSubject("curl-" + name)
			msg := filepath.Join(t.TempDir(), "msg.eml")
			if err := os.WriteFile(msg, smtpTestMessage(subject), 0o644); err != nil {
				t.Fatal(err)
			}
			mark := pf.Log.Mark()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, curl, "-sS", "--ssl-reqd", "--cacert", it.certFile,
				"--user", "alice@example.test", "--oauth2-bearer", token,
				"--mail-from", "alice@example.test", "--mail-rcpt", "alice@example.test",
				"--upload-file", msg, url).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			pf.Log.WaitSince(t, mark, "sasl_username=alice@example.test", 10*time.Second)
			it.dc.WaitMessage(t, "alice@example.test", subject, 15*time.Second)
			if !strings.Contains(it.tp.logs.String(), "mech=OAUTHBEARER result=ok") {
				t.Errorf("curl did not log in with OAUTHBEARER")
			}
		})
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	if _, err := strconv.Atoi(p); err != nil {
		return "0"
	}
	return p
}
