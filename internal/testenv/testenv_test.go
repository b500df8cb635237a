package testenv_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
	// ioTimeout bounds every raw protocol conversation of these tests.
	ioTimeout = 20 * time.Second
	// logTimeout bounds waits for log lines and delivered mail.
	logTimeout = 10 * time.Second
)

// conn is a raw line-oriented client.
type conn struct {
	t testing.TB
	net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, laddr, addr string, tlsConf *tls.Config) *conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(&d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *conn) line() string {
	c.t.Helper()
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (partial %q)", err, s)
	}
	return strings.TrimRight(s, "\r\n")
}

func (c *conn) send(s string) {
	c.t.Helper()
	if _, err := c.Write([]byte(s + "\r\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// tagged reads IMAP lines until the one tagged tag.
func (c *conn) tagged(tag string) string {
	c.t.Helper()
	for {
		if l := c.line(); strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
}

// reply reads a (multi-line) SMTP reply and returns all its lines.
func (c *conn) reply() []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines
		}
	}
}

// cmd sends an SMTP command and checks the reply code.
func (c *conn) cmd(s, code string) []string {
	c.t.Helper()
	if s != "" {
		c.send(s)
	}
	r := c.reply()
	if last := r[len(r)-1]; !strings.HasPrefix(last, code) {
		c.t.Fatalf("%q: got %q, want %s", redact(s), last, code)
	}
	return r
}

// startTLS upgrades c in place.
func (c *conn) startTLS(conf *tls.Config) {
	c.t.Helper()
	tc := tls.Client(c.Conn, conf)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("tls handshake: %v", err)
	}
	c.Conn = tc
	c.r = bufio.NewReader(tc)
}

// redact hides SASL payloads in failure messages.
func redact(s string) string {
	if strings.HasPrefix(s, "AUTH ") || strings.Contains(s, "AUTHENTICATE") {
		return "<auth command>"
	}
	return s
}

func plain(authz, authc, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + authc + "\x00" + pw))
}

func unique(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

func TestDovecotMasterLogin(t *testing.T) {
	dc := testenv.SharedDovecot(t)

	t.Run("plain IMAP from trusted 127.0.0.1 with ID x-originating-ip", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.IMAPAddr, nil)
		if g := c.line(); !strings.HasPrefix(g, "* OK") || !strings.Contains(g, "STARTTLS") {
			t.Fatalf("greeting %q", g)
		}
		c.send(`a ID ("x-originating-ip" "203.0.113.7" "x-originating-port" "40001")`)
		if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
			t.Fatalf("ID: %q", r)
		}
		if testenv.Generation() == "2.4" {
			// 2.4 with ssl = required: a trusted network is not secured
			// any more (only the same address on both ends, or TLS).
			c.send("b AUTHENTICATE PLAIN " + plain(alice, dc.MasterUser, dc.MasterPassword))
			if r := c.tagged("b"); !strings.HasPrefix(r, "b NO [PRIVACYREQUIRED]") {
				t.Fatalf("plaintext master login on 2.4: %q, want NO [PRIVACYREQUIRED]", r)
			}
			dc.Log.WaitSince(t, mark, "SSL required for authentication", logTimeout)
			c = dial(t, "", dc.IMAPAddr, nil)
			c.line()
			c.send("s STARTTLS")
			if r := c.tagged("s"); !strings.HasPrefix(r, "s OK") {
				t.Fatalf("STARTTLS: %q", r)
			}
			c.startTLS(dc.TLSConfig())
			c.send(`a ID ("x-originating-ip" "203.0.113.7" "x-originating-port" "40001")`)
			if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
				t.Fatalf("ID: %q", r)
			}
		}
		c.send("b AUTHENTICATE PLAIN " + plain(alice, dc.MasterUser, dc.MasterPassword))
		if r := c.tagged("b"); !strings.HasPrefix(r, "b OK [CAPABILITY") {
			t.Fatalf("master login: %q", r)
		}
		c.send("c LOGOUT")
		line := dc.Log.WaitSince(t, mark, dc.LoginLogPrefix()+alice+">", logTimeout)
		if !strings.Contains(line, "rip=203.0.113.7") {
			t.Errorf("login line does not carry the forwarded IP: %q", line)
		}
		if !dc.LogContains("Master user logging in as " + alice) {
			t.Errorf("no master login in log")
		}
	})

	t.Run("IMAPS", func(t *testing.T) {
		c := dial(t, "", dc.IMAPSAddr, dc.TLSConfig())
		if g := c.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting %q", g)
		}
		c.send("a LOGIN \"" + alice + "\" \"password\"")
		if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
			t.Fatalf("user login over IMAPS: %q", r)
		}
	})

	t.Run("PROXY protocol listener", func(t *testing.T) {
		mark := dc.Log.Mark()
		c := dial(t, "", dc.HAProxyAddr, nil)
		c.send("PROXY TCP4 198.51.100.9 127.0.0.1 40002 143")
		if g := c.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting %q", g)
		}
		c.send("a LOGOUT")
		c.tagged("a")
		dc.Log.WaitSince(t, mark, "rip=198.51.100.9", logTimeout)
	})

	t.Run("master refused from untrusted 127.0.0.2", func(t *testing.T) {
		// Failures are penalized per remote IP: never fail from 127.0.0.1 on a shared instance.
		mark := dc.Log.Mark()
		c := dial(t, "127.0.0.2", dc.IMAPAddr, nil)
		c.line()
		c.send("a STARTTLS")
		if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
			t.Fatalf("STARTTLS: %q", r)
		}
		c.startTLS(dc.TLSConfig())
		c.send("b AUTHENTICATE PLAIN " + plain(alice, dc.MasterUser, dc.MasterPassword))
		if r := c.tagged("b"); !strings.HasPrefix(r, "b NO") {
			t.Fatalf("master login from 127.0.0.2: %q, want NO", r)
		}
		dc.Log.WaitSince(t, mark, "allow_real_nets check failed", logTimeout)
	})
}

func TestDovecotDeliveryHelpers(t *testing.T) {
	dc := testenv.SharedDovecot(t)
	id := unique(t)
	dc.AppendDirect(t, alice, []byte("Subject: append "+id+"\n\nbody\n"))
	if b := dc.WaitMessage(t, alice, "append "+id, logTimeout); !strings.Contains(string(b), "body") {
		t.Errorf("appended message: %q", b)
	}
	dc.DeliverLMTP(t, bob, []byte("Subject: lmtp "+id+"\n\n.leading dot\n"))
	b := dc.WaitMessage(t, bob, "lmtp "+id, logTimeout)
	if !strings.Contains(string(b), "\n.leading dot") || !strings.Contains(string(b), "Delivered-To: "+bob) {
		t.Errorf("LMTP message: %q", b)
	}
	if _, ok := dc.FindMessage(alice, "lmtp "+id); ok {
		t.Errorf("message for bob found in alice's Maildir")
	}
}

func TestPostfixSubmission(t *testing.T) {
	env := testenv.Shared(t)
	dc, pf := env.Dovecot, env.Postfix

	t.Run("submission STARTTLS + master AUTH PLAIN delivers to Maildir", func(t *testing.T) {
		id := unique(t)
		mark := pf.Log.Mark()
		c := dial(t, "", pf.SubmissionAddr, nil)
		c.cmd("", "220")
		ehlo := strings.Join(c.cmd("EHLO client.example.test", "250"), "\n")
		if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "XCLIENT") {
			t.Errorf("EHLO before TLS:\n%s", ehlo)
		}
		c.cmd("MAIL FROM:<"+alice+">", "530")
		c.cmd("STARTTLS", "220")
		c.startTLS(pf.TLSConfig())
		if ehlo := strings.Join(c.cmd("EHLO client.example.test", "250"), "\n"); !strings.Contains(ehlo, "AUTH PLAIN") {
			t.Fatalf("EHLO after TLS has no AUTH PLAIN:\n%s", ehlo)
		}
		c.cmd("AUTH PLAIN "+plain(alice, dc.MasterUser, dc.MasterPassword), "235")
		c.cmd("MAIL FROM:<"+bob+">", "250")
		c.cmd("RCPT TO:<"+bob+">", "553") // sender login mismatch
		c.cmd("RSET", "250")
		c.cmd("MAIL FROM:<"+alice+">", "250")
		c.cmd("RCPT TO:<"+bob+">", "250")
		c.cmd("DATA", "354")
		c.send("From: <" + alice + ">\r\nTo: <" + bob + ">\r\nSubject: " + id + "\r\n\r\nhello\r\n.")
		c.cmd("", "250")
		c.cmd("QUIT", "221")
		msg := dc.WaitMessage(t, bob, "Subject: "+id, logTimeout)
		if !strings.Contains(string(msg), "(Authenticated sender: "+alice+")") {
			t.Errorf("delivered message lacks the authenticated sender:\n%s", msg)
		}
		line := pf.Log.WaitSince(t, mark, "sasl_method=PLAIN", logTimeout)
		if !strings.Contains(line, "sasl_username="+alice) {
			t.Errorf("postfix log: %q", line)
		}
	})

	t.Run("submissions implicit TLS", func(t *testing.T) {
		c := dial(t, "", pf.SubmissionsAddr, pf.TLSConfig())
		c.cmd("", "220")
		c.cmd("EHLO client.example.test", "250")
		c.cmd("AUTH PLAIN "+plain(bob, dc.MasterUser, dc.MasterPassword), "235")
		c.cmd("QUIT", "221")
	})
}

func TestHydraTokens(t *testing.T) {
	idp := testenv.SharedHydra(t)
	ctx := t.Context()
	f := false

	for _, tc := range []struct {
		name       string
		opts       testenv.TokenOptions
		wantStatus int
		check      func(t *testing.T, tok string, userinfo map[string]any)
	}{
		{"jwt", testenv.TokenOptions{}, http.StatusOK, func(t *testing.T, tok string, ui map[string]any) {
			if ui["email"] != alice || ui["email_verified"] != true {
				t.Errorf("userinfo %v", ui)
			}
			hdr, claims := decodeJWT(t, tok)
			kids, err := idp.SigningKeyIDs(ctx)
			if err != nil || !slices.Contains(kids, hdr["kid"].(string)) {
				t.Errorf("kid %v not in JWKS %v (%v)", hdr["kid"], kids, err)
			}
			if claims["iss"] != idp.Issuer || claims["email"] != alice || !slices.Contains(toStrings(claims["aud"]), idp.Audience) {
				t.Errorf("claims %v", claims)
			}
			intro, err := idp.Introspect(ctx, tok)
			if err != nil || intro["active"] != true {
				t.Errorf("introspection %v %v", intro, err)
			}
		}},
		{"opaque", testenv.TokenOptions{Opaque: true}, http.StatusOK, func(t *testing.T, tok string, ui map[string]any) {
			if !strings.HasPrefix(tok, "ory_at_") || ui["email"] != alice {
				t.Errorf("opaque token %.10q..., userinfo %v", tok, ui)
			}
		}},
		{"email not verified", testenv.TokenOptions{EmailVerified: &f}, http.StatusOK, func(t *testing.T, _ string, ui map[string]any) {
			if ui["email_verified"] != false {
				t.Errorf("userinfo %v", ui)
			}
		}},
		{"no email, other audience and lifetime", testenv.TokenOptions{OmitEmail: true, Audience: []string{"other"}, Lifetime: 90 * time.Second}, http.StatusOK, func(t *testing.T, tok string, ui map[string]any) {
			_, claims := decodeJWT(t, tok)
			if _, ok := ui["email"]; ok || !slices.Equal(toStrings(claims["aud"]), []string{"other"}) {
				t.Errorf("userinfo %v, claims %v", ui, claims)
			}
			checkLifetime(t, claims, 90)
		}},
		{"expired jwt", testenv.TokenOptions{Expired: true}, http.StatusUnauthorized, nil},
		{"expired opaque", testenv.TokenOptions{Expired: true, Opaque: true}, http.StatusUnauthorized, nil},
		{"revoked jwt", testenv.TokenOptions{Revoked: true}, http.StatusUnauthorized, nil},
		{"revoked opaque", testenv.TokenOptions{Revoked: true, Opaque: true}, http.StatusUnauthorized, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := idp.MintToken(t, alice, tc.opts)
			status, body, err := idp.Userinfo(ctx, tok)
			if err != nil || status != tc.wantStatus {
				t.Fatalf("userinfo: status %d (%v), want %d: %s", status, err, tc.wantStatus, body)
			}
			if tc.check != nil {
				var ui map[string]any
				if err := json.Unmarshal(body, &ui); err != nil {
					t.Fatalf("userinfo body: %v", err)
				}
				tc.check(t, tok, ui)
			}
		})
	}

	t.Run("Revoke", func(t *testing.T) {
		tok := idp.MintToken(t, bob, testenv.TokenOptions{})
		idp.Revoke(t, tok)
		if status, _, err := idp.Userinfo(ctx, tok); err != nil || status != http.StatusUnauthorized {
			t.Fatalf("userinfo after Revoke: %d %v", status, err)
		}
	})
}

func TestHydraKeyRotation(t *testing.T) {
	idp := testenv.StartHydra(t, testenv.HydraOptions{}) // rotation would break other tests' JWTs
	ctx := t.Context()
	before, err := idp.SigningKeyIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kid := idp.RotateSigningKey(t)
	after, err := idp.SigningKeyIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(before, kid) || !slices.Contains(after, kid) || len(after) != len(before)+1 {
		t.Fatalf("kid %s: JWKS before %v, after %v", kid, before, after)
	}
	hdr, _ := decodeJWT(t, idp.MintToken(t, alice, testenv.TokenOptions{}))
	if hdr["kid"] != kid {
		t.Errorf("token minted after rotation has kid %v, want %s", hdr["kid"], kid)
	}
}

func TestDovecotOAuth2Passdb(t *testing.T) {
	idp := testenv.SharedHydra(t)
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{
		OAuth2: &testenv.DovecotOAuth2{IntrospectionURL: idp.UserinfoURL},
	})
	tok := idp.MintToken(t, alice, testenv.TokenOptions{})
	c := dial(t, "", dc.IMAPSAddr, dc.TLSConfig())
	c.line()
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + alice + "\x01auth=Bearer " + tok + "\x01\x01"))
	c.send("a AUTHENTICATE XOAUTH2 " + ir)
	if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
		t.Fatalf("XOAUTH2 via Dovecot's oauth2 passdb: %q", r)
	}
}

func TestStartStop(t *testing.T) {
	testenv.Require(t) // all parts; else the subtest would skip and this test fail
	var dc *testenv.Dovecot
	var pf *testenv.Postfix
	var idp *testenv.Hydra
	t.Run("start", func(t *testing.T) {
		dc = testenv.StartDovecot(t, testenv.DovecotOptions{
			Users:          []testenv.User{{Name: "carol@other.test", Password: "pw-carol"}},
			MasterUser:     "proxy",
			MasterPassword: "masterpw",
			MasterAnyNet:   true,
		})
		pf = testenv.StartPostfix(t, dc, testenv.PostfixOptions{DisableXClient: true})
		idp = testenv.StartHydra(t, testenv.HydraOptions{AccessTokenLifespan: 10 * time.Minute})
		c := dial(t, "127.0.0.3", dc.IMAPSAddr, dc.TLSConfig()) // MasterAnyNet: any IP
		c.line()
		c.send(`a LOGIN "carol@other.test*proxy" "masterpw"`)
		if r := c.tagged("a"); !strings.HasPrefix(r, "a OK") {
			t.Fatalf("separator master login: %q", r)
		}
		s := dial(t, "", pf.SubmissionAddr, nil)
		s.cmd("", "220")
		if ehlo := strings.Join(s.cmd("EHLO x.example.test", "250"), "\n"); strings.Contains(ehlo, "XCLIENT") {
			t.Errorf("XCLIENT advertised with DisableXClient:\n%s", ehlo)
		}
		_, claims := decodeJWT(t, idp.MintToken(t, "carol@other.test", testenv.TokenOptions{}))
		checkLifetime(t, claims, 600)
	})
	if dc == nil || pf == nil || idp == nil {
		t.Fatal("start failed")
	}
	// The subtest's cleanups have stopped everything.
	for _, addr := range []string{dc.IMAPAddr, dc.IMAPSAddr, dc.LMTPAddr, dc.POP3Addr, dc.SieveAddr, pf.SubmissionAddr, strings.TrimPrefix(idp.PublicURL, "http://")} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
	}
	for _, dir := range []string{dc.Dir, pf.Dir, idp.Dir} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed after Stop: %v", dir, err)
		}
	}
	if err := dc.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestNewWithoutTB(t *testing.T) {
	testenv.Require(t, testenv.PartDovecot)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := testenv.NewDovecot(ctx, testenv.DovecotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Stop()
	if err := dc.Deliver(ctx, "nobody@example.test", []byte("Subject: x\n\nx\n")); err == nil {
		t.Errorf("LMTP delivery to an unknown user succeeded")
	}
	if err := dc.Append(ctx, alice, []byte("Subject: y\n\ny\n")); err != nil {
		t.Errorf("Append: %v", err)
	}
	if err := dc.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err == nil {
			err = json.Unmarshal(b, dst)
		}
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return header, claims
}

// checkLifetime checks exp-iat; Hydra's two timestamps may straddle a second.
func checkLifetime(t *testing.T, claims map[string]any, want float64) {
	t.Helper()
	exp, _ := claims["exp"].(float64)
	iat, _ := claims["iat"].(float64)
	if d := exp - iat; d < want || d > want+1 {
		t.Errorf("token lifetime exp-iat = %v s, want %v", d, want)
	}
}

func toStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestDovecotIMAPCompress checks the generation-neutral COMPRESS option.
func TestDovecotIMAPCompress(t *testing.T) {
	dc := testenv.StartDovecot(t, testenv.DovecotOptions{IMAPCompress: true})
	c := dial(t, "", dc.IMAPSAddr, dc.TLSConfig())
	c.line()
	c.send("a AUTHENTICATE PLAIN " + plain(alice, dc.MasterUser, dc.MasterPassword))
	if r := c.tagged("a"); !strings.HasPrefix(r, "a OK [CAPABILITY") || !strings.Contains(r, "COMPRESS=DEFLATE") {
		t.Fatalf("master login over IMAPS: %q, want COMPRESS=DEFLATE among the capabilities", r)
	}
	c.send("b COMPRESS DEFLATE")
	if r := c.tagged("b"); !strings.HasPrefix(r, "b OK") {
		t.Fatalf("COMPRESS: %q", r)
	}
}

// TestDovecotStartFailsFast: a Dovecot whose services die at start-up (here
// an unknown plugin) fails the start at once instead of after the timeout.
func TestDovecotStartFailsFast(t *testing.T) {
	testenv.Require(t, testenv.PartDovecot)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	extra := "mail_plugins = no_such_plugin\n"
	if testenv.Generation() == "2.4" {
		extra = "mail_plugins {\n  no_such_plugin = yes\n}\n"
	}
	t0 := time.Now()
	d, err := testenv.NewDovecot(ctx, testenv.DovecotOptions{ExtraConfig: extra})
	if err == nil {
		d.Stop()
		t.Fatal("Dovecot with an unknown plugin started")
	}
	if el := time.Since(t0); el > 10*time.Second || !strings.Contains(err.Error(), "no_such_plugin") {
		t.Fatalf("after %v: %v", el, err)
	}
}
