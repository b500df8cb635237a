package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const testDeadline = 10 * time.Second

func startDemo(t *testing.T) *Demo {
	t.Helper()
	d, err := Start(t.Context())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func dialIMAP(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// masterIMAP logs in to the demo IMAP backend as user, the way mailgate does.
func masterIMAP(t *testing.T, d *Demo, user string) *imapclient.Client {
	t.Helper()
	c := dialIMAP(t, d.IMAPAddr)
	if err := c.Authenticate(sasl.NewPlainClient(user, d.MasterUser, d.MasterPassword)); err != nil {
		t.Fatalf("authenticate as %s: %v", user, err)
	}
	return c
}

// inbox returns the full text of every message in the user's INBOX.
func inbox(t *testing.T, c *imapclient.Client) []string {
	t.Helper()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	section := &imap.FetchItemBodySection{}
	msgs, err := c.Fetch(imap.SeqSetNum(seqRange(sel.NumMessages)...), &imap.FetchOptions{
		BodySection: []*imap.FetchItemBodySection{section},
	}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.FindBodySection(section)))
	}
	return out
}

func seqRange(n uint32) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = uint32(i + 1)
	}
	return s
}

func TestIMAPMasterLogin(t *testing.T) {
	d := startDemo(t)

	c := dialIMAP(t, d.IMAPAddr)
	caps := c.Caps()
	for _, want := range []imap.Cap{"ID", imap.CapSASLIR, "AUTH=PLAIN"} {
		if !caps.Has(want) {
			t.Errorf("pre-auth caps %v lack %s", caps, want)
		}
	}
	id, err := c.ID(&imap.IDData{Name: "demo-test"}).Wait()
	if err != nil {
		t.Fatalf("ID before login: %v", err)
	}
	if id.Name != "mailgate-demo" {
		t.Errorf("ID name = %q, want mailgate-demo", id.Name)
	}
	if err := c.Authenticate(sasl.NewPlainClient(d.User, d.MasterUser, d.MasterPassword)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	msgs := inbox(t, c)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: Welcome to the mailgate demo") {
		t.Fatalf("INBOX = %q, want one welcome message", msgs)
	}
	if _, err := c.ID(nil).Wait(); err != nil {
		t.Errorf("ID after login: %v", err)
	}

	for _, tt := range []struct {
		name  string
		login func(*imapclient.Client) error
		ok    bool
	}{
		{"LOGIN user*master", func(c *imapclient.Client) error {
			return c.Login(SecondUser+"*"+d.MasterUser, d.MasterPassword).Wait()
		}, true},
		{"PLAIN user*master without authzid", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("", SecondUser+"*"+d.MasterUser, d.MasterPassword))
		}, true},
		{"wrong master password", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient(d.User, d.MasterUser, d.MasterPassword+"x"))
		}, false},
		{"wrong master user", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient(d.User, "root", d.MasterPassword))
		}, false},
		{"unknown user", func(c *imapclient.Client) error {
			return c.Authenticate(sasl.NewPlainClient("bob@example.test", d.MasterUser, d.MasterPassword))
		}, false},
		{"user's own login", func(c *imapclient.Client) error {
			return c.Login(d.User, d.MasterPassword).Wait()
		}, false},
		{"LOGIN with wrong master password", func(c *imapclient.Client) error {
			return c.Login(d.User+"*"+d.MasterUser, "nope").Wait()
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialIMAP(t, d.IMAPAddr)
			err := tt.login(c)
			if tt.ok != (err == nil) {
				t.Fatalf("login error = %v, want success %v", err, tt.ok)
			}
			var imapErr *imap.Error
			if err != nil && (!errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed) {
				t.Errorf("error = %v, want NO [AUTHENTICATIONFAILED]", err)
			}
		})
	}
}

// TestIMAPWire replays what mailgate sends to Dovecot, pipelined.
func TestIMAPWire(t *testing.T) {
	d := startDemo(t)
	conn, err := net.Dial("tcp", d.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testDeadline))
	br := bufio.NewReader(conn)

	greeting, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"* OK [CAPABILITY IMAP4rev1 ID ", " SASL-IR", " AUTH=PLAIN"} {
		if !strings.Contains(greeting, want) {
			t.Errorf("greeting %q lacks %q", greeting, want)
		}
	}

	ir := base64.StdEncoding.EncodeToString([]byte(d.User + "\x00" + d.MasterUser + "\x00" + d.MasterPassword))
	fmt.Fprintf(conn, "a0 ID (\"name\" {4+}\r\ntest \"x-originating-ip\" \"192.0.2.7\")\r\n"+
		"a1 AUTHENTICATE PLAIN %s\r\na2 SELECT INBOX\r\na3 LOGOUT\r\n", ir)
	transcript, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, transcript)
	}
	for _, want := range []string{
		"* ID (\"name\" \"mailgate-demo\")\r\na0 OK",
		"a1 OK [CAPABILITY IMAP4rev1 ID ",
		"* 1 EXISTS\r\n",
		"a2 OK",
		"a3 OK",
	} {
		if !strings.Contains(string(transcript), want) {
			t.Errorf("transcript lacks %q:\n%s", want, transcript)
		}
	}
}

// TestIMAPAppendLiteral checks that literal data is passed through as is,
// even when it looks like an ID command.
func TestIMAPAppendLiteral(t *testing.T) {
	d := startDemo(t)
	c := masterIMAP(t, d, d.User)
	msg := "Subject: literal\r\n\r\na1 ID (\"name\" \"x\")\r\n* CAPABILITY IMAP4rev1 IDLE\r\nend\r\n"
	ac := c.Append("INBOX", int64(len(msg)), nil)
	io.WriteString(ac, msg)
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("append: %v", err)
	}
	msgs := inbox(t, c)
	if len(msgs) != 2 || msgs[1] != msg {
		t.Fatalf("INBOX = %q, want the welcome message and %q", msgs, msg)
	}
}

func TestSMTP(t *testing.T) {
	d := startDemo(t)

	dial := func(t *testing.T) *smtp.Client {
		t.Helper()
		c, err := smtp.Dial(d.SMTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Hello("client.example.test"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	master := func(user string) sasl.Client { return sasl.NewPlainClient(user, d.MasterUser, d.MasterPassword) }

	t.Run("deliver", func(t *testing.T) {
		c := dial(t)
		for _, ext := range []string{"PIPELINING", "8BITMIME", "SIZE"} {
			if ok, _ := c.Extension(ext); !ok {
				t.Errorf("EHLO lacks %s", ext)
			}
		}
		if _, p := c.Extension("AUTH"); p != "PLAIN" {
			t.Errorf("AUTH mechanisms = %q, want PLAIN", p)
		}
		if err := c.Auth(master(d.User)); err != nil {
			t.Fatalf("auth: %v", err)
		}
		msg := "From: <demo@example.test>\r\nTo: <alice@example.test>\r\nSubject: hello alice\r\n\r\nhi\r\n"
		if err := c.SendMail(d.User, []string{SecondUser, strings.ToUpper(d.User)}, strings.NewReader(msg)); err != nil {
			t.Fatalf("send: %v", err)
		}
		for _, rcpt := range []string{SecondUser, d.User} {
			msgs := inbox(t, masterIMAP(t, d, rcpt))
			if len(msgs) != 2 {
				t.Fatalf("%s INBOX has %d messages, want 2", rcpt, len(msgs))
			}
			got := msgs[1]
			if !strings.HasPrefix(got, "Received: from client.example.test") ||
				!strings.Contains(got, "(Authenticated sender: demo@example.test)") ||
				!strings.Contains(got, "for <"+rcpt+">") ||
				!strings.HasSuffix(got, msg) {
				t.Errorf("%s got %q", rcpt, got)
			}
		}
	})

	for _, tt := range []struct {
		name string
		run  func(*smtp.Client) error
		code int
	}{
		{"MAIL before AUTH", func(c *smtp.Client) error { return c.Mail(d.User, nil) }, 530},
		{"wrong master password", func(c *smtp.Client) error {
			return c.Auth(sasl.NewPlainClient(d.User, d.MasterUser, "wrong"))
		}, 535},
		{"unknown authzid", func(c *smtp.Client) error { return c.Auth(master("bob@example.test")) }, 535},
		{"malformed PLAIN", func(c *smtp.Client) error { return c.Auth(rawPlain("no-separators")) }, 535},
		{"forged MAIL FROM", func(c *smtp.Client) error {
			if err := c.Auth(master(d.User)); err != nil {
				return err
			}
			return c.Mail(SecondUser, nil)
		}, 553},
		{"unknown recipient", func(c *smtp.Client) error {
			if err := c.Auth(master(d.User)); err != nil {
				return err
			}
			if err := c.Mail(d.User, nil); err != nil {
				return err
			}
			return c.Rcpt("bob@example.test", nil)
		}, 550},
		{"message too large", func(c *smtp.Client) error {
			if err := c.Auth(master(d.User)); err != nil {
				return err
			}
			return c.Mail(d.User, &smtp.MailOptions{Size: MaxMessageBytes + 1})
		}, 552},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(dial(t))
			var smtpErr *smtp.SMTPError
			if !errors.As(err, &smtpErr) || smtpErr.Code != tt.code {
				t.Fatalf("error = %v, want %d", err, tt.code)
			}
		})
	}
}

// rawPlain is a PLAIN client sending a fixed initial response.
type rawPlain string

func (r rawPlain) Start() (string, []byte, error) { return sasl.Plain, []byte(r), nil }
func (rawPlain) Next([]byte) ([]byte, error)      { return nil, errors.New("unexpected challenge") }

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func TestIssuerDiscoveryAndJWKS(t *testing.T) {
	d := startDemo(t)
	var disc map[string]any
	getJSON(t, d.Issuer.URL()+"/.well-known/openid-configuration", &disc)
	want := map[string]string{
		"issuer":                 d.Issuer.URL(),
		"jwks_uri":               d.Issuer.URL() + "/jwks.json",
		"userinfo_endpoint":      d.Issuer.URL() + "/userinfo",
		"introspection_endpoint": d.Issuer.URL() + "/introspect",
	}
	for k, v := range want {
		if disc[k] != v {
			t.Errorf("discovery %s = %v, want %s", k, disc[k], v)
		}
	}

	var jwks struct {
		Keys []struct{ Kty, Alg, Kid, N, E string }
	}
	getJSON(t, disc["jwks_uri"].(string), &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Alg != "RS256" {
		t.Fatalf("jwks = %+v", jwks)
	}
	k := jwks.Keys[0]
	n, errN := base64.RawURLEncoding.DecodeString(k.N)
	e, errE := base64.RawURLEncoding.DecodeString(k.E)
	if errN != nil || errE != nil {
		t.Fatalf("jwk encoding: %v %v", errN, errE)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}

	parts := strings.Split(d.Token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var header struct{ Alg, Kid, Typ string }
	var claims tokenClaims
	decode := func(seg string, v any) {
		raw, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			t.Fatal(err)
		}
	}
	decode(parts[0], &header)
	decode(parts[1], &claims)
	if header.Alg != "RS256" || header.Typ != "at+jwt" || header.Kid != k.Kid {
		t.Errorf("header = %+v, want RS256 at+jwt kid %s", header, k.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature does not verify with the JWKS key: %v", err)
	}
	if claims.Issuer != d.Issuer.URL() || claims.Audience != Audience || claims.Email != DemoUser ||
		!claims.EmailVerified || claims.Subject == "" || claims.ID == "" {
		t.Errorf("claims = %+v", claims)
	}
	if ttl := time.Duration(claims.Expires-claims.IssuedAt) * time.Second; ttl != TokenTTL {
		t.Errorf("token lifetime = %v, want %v", ttl, TokenTTL)
	}
}

func TestIssuerUserinfoAndIntrospection(t *testing.T) {
	d := startDemo(t)
	other, err := StartIssuer(mustListen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	foreign, err := other.MintToken(DemoUser, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	expired, err := d.Issuer.sign(tokenClaims{
		Issuer: d.Issuer.URL(), Subject: "x", Audience: Audience, Email: DemoUser,
		IssuedAt: now.Add(-2 * time.Hour).Unix(), Expires: now.Add(-time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, token string
		valid       bool
	}{
		{"minted", d.Token, true},
		{"claims swapped", tamper(t, d.Token, SecondUser), false},
		{"signature cut", d.Token[:len(d.Token)-4], false},
		{"expired", expired, false},
		{"other issuer", foreign, false},
		{"garbage", "not-a-jwt", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, d.Issuer.URL()+"/userinfo", nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if !tt.valid {
				if resp.StatusCode != http.StatusUnauthorized ||
					!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("userinfo = %s, WWW-Authenticate %q; want 401 invalid_token",
						resp.Status, resp.Header.Get("WWW-Authenticate"))
				}
			} else {
				var info struct {
					Sub           string
					Email         string
					EmailVerified bool `json:"email_verified"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("userinfo = %s, %v", resp.Status, err)
				}
				if info.Email != DemoUser || !info.EmailVerified || info.Sub == "" {
					t.Errorf("userinfo = %+v", info)
				}
			}

			resp, err = http.PostForm(d.Issuer.URL()+"/introspect", url.Values{"token": {tt.token}})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var intro struct {
				Active bool
				Email  string
				Aud    string
			}
			if err := json.NewDecoder(resp.Body).Decode(&intro); err != nil {
				t.Fatal(err)
			}
			if intro.Active != tt.valid || (tt.valid && (intro.Email != DemoUser || intro.Aud != Audience)) {
				t.Errorf("introspection = %+v, want active %v", intro, tt.valid)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		resp, err := http.Get(d.Issuer.URL() + "/userinfo")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("userinfo without token = %s", resp.Status)
		}
	})
}

// tamper replaces the email claim of a token, keeping its signature.
func tamper(t *testing.T, token, email string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.Replace(raw, []byte(DemoUser), []byte(email), 1)
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestCloseOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	d, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cancel()
	deadline := time.Now().Add(testDeadline)
	for {
		c, err := net.Dial("tcp", d.IMAPAddr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("IMAP backend still accepting after cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
