package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem found by [Config.Validate]: the key it concerns
// and what to do about it.
type FieldError struct {
	Key     string // dotted key, e.g. "imap.backend.address"
	Problem string
	// Where is the place in the file ("mailgate.yaml:3", or "line 3" for
	// [Parse]) for a problem found there, else empty.
	Where string
	// Err is the underlying error, if any (e.g. [ErrSecretConflict]).
	Err error
}

func (e *FieldError) Error() string {
	if e.Where != "" {
		return e.Where + ": " + e.Key + ": " + e.Problem
	}
	return e.Key + ": " + e.Problem
}

func (e *FieldError) Unwrap() error { return e.Err }

// Checks are checks of file contents that [Config.ValidateWith] cannot make
// itself (config imports nothing of mailgate's own); the command wires them
// in. A nil check is skipped.
type Checks struct {
	// Pair loads a certificate chain and its private key (tls.cert_file and
	// tls.key_file, and each tls.certificates entry) and says what is wrong
	// with each file (nil: nothing). It is not called when neither file can
	// be opened; when one cannot, its error is ignored (Validate has
	// reported it) and the other file's is kept.
	Pair func(certFile, keyFile string) (certErr, keyErr error)
}

// IMAP IDLE clients re-issue IDLE every 29 minutes (RFC 2177), so a shorter
// idle timeout cuts them off; below minIdleTimeout it is surely a mistake.
const (
	idleWarnBelow  = 29 * time.Minute
	minIdleTimeout = time.Minute
)

type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (p *problems) oneOf(key, val string, allowed ...string) {
	if slices.Contains(allowed, val) {
		return
	}
	want := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	p.add(key, "want %s, got %q", want, val)
}

// Validate reports every problem of c at once, joined with errors.Join; each
// is a *[FieldError] naming its key. It includes the problems found while
// loading (unknown keys in the file, with their line; *_file secrets that
// could not be read). It checks that files named by the configuration can
// be opened, but not their contents: see [Config.ValidateWith]. A nil error
// means c can be served.
func (c *Config) Validate() error { return c.ValidateWith(Checks{}) }

// ValidateWith is [Config.Validate] with the content checks of ch.
func (c *Config) ValidateWith(ch Checks) error {
	p := problems(slices.Clone(c.loadProblems))
	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", c.Log.Format, "text", "json")

	imapOn, smtpOn := c.On(ProtoIMAP), c.On(ProtoSMTP)
	if !imapOn && !smtpOn && !c.On(ProtoPOP3) && !c.On(ProtoSieve) {
		p.add("imap.listen_tls", "no protocol is served: set at least one of imap.listen_tls, imap.listen_starttls, smtp.listen_tls, smtp.listen_starttls, pop3.backend.address, sieve.backend.address")
	}
	p.listen("imap.listen_tls", c.IMAP.ListenTLS)
	p.listen("imap.listen_starttls", c.IMAP.ListenStartTLS)
	p.listen("smtp.listen_tls", c.SMTP.ListenTLS)
	p.listen("smtp.listen_starttls", c.SMTP.ListenStartTLS)
	p.listen("pop3.listen_tls", c.POP3.ListenTLS)
	p.listen("pop3.listen_starttls", c.POP3.ListenStartTLS)
	p.listen("sieve.listen", c.Sieve.Listen)
	p.listen("http.listen", c.HTTP.Listen)

	c.validateTLS(&p, imapOn || smtpOn || c.On(ProtoPOP3) || c.On(ProtoSieve), ch.Pair)

	if imapOn || (smtpOn && c.SMTP.Backend.Login != LoginXClient) || c.On(ProtoPOP3) || c.On(ProtoSieve) {
		if c.Master.User == "" {
			p.add("master.user", "required: the Dovecot master user (e.g. \"mailgate\")")
		}
		if c.Master.Password == "" && !c.loadProblem("master.password_file") {
			p.add("master.password", "required: set master.password_file to a file holding the master password")
		}
	}

	p.backend("imap", c.IMAP.Backend, imapOn, "mailserver:143")
	p.oneOf("imap.backend.client_ip", c.IMAP.Backend.ClientIP, ClientIPNone, ClientIPID, ClientIPProxy)
	if c.IMAP.Backend.Login != "" {
		p.add("imap.backend.login", "only used for SMTP: remove it")
	}
	p.backend("smtp", c.SMTP.Backend, smtpOn, "mailserver:587")
	p.oneOf("smtp.backend.client_ip", c.SMTP.Backend.ClientIP, ClientIPNone, ClientIPXClient, ClientIPProxy)
	p.oneOf("smtp.backend.login", c.SMTP.Backend.Login, LoginMaster, LoginXClient)
	for _, d := range []struct {
		proto   string
		b       Backend
		example string
	}{{ProtoPOP3, c.POP3.Backend, "mailserver:110"}, {ProtoSieve, c.Sieve.Backend, "mailserver:4190"}} {
		p.backend(d.proto, d.b, false, d.example)
		p.oneOf(d.proto+".backend.client_ip", d.b.ClientIP, ClientIPNone, ClientIPXClient, ClientIPProxy)
		if d.b.Login != "" {
			p.add(d.proto+".backend.login", "only used for SMTP: remove it")
		}
	}
	if c.SMTP.MaxMessageBytes < 0 {
		p.add("smtp.max_message_bytes", "must be >= 0 (0 = the backend's SIZE)")
	}
	for _, from := range slices.Sorted(maps.Keys(c.SMTP.SenderAliases)) {
		if !strings.Contains(from, "@") {
			p.add("smtp.sender_aliases", "key %q: want an address", from)
		}
		for _, to := range c.SMTP.SenderAliases[from] {
			if !strings.Contains(to, "@") {
				p.add("smtp.sender_aliases", "%q: %q is not an address or *@domain", from, to)
			}
		}
	}

	c.validateOAuth2(&p)
	c.validateClients(&p)
	c.validateDiscovery(&p)
	c.validateCluster(&p)
	c.validateAppPasswords(&p)
	for _, proto := range c.Auth.PasswordPassthroughProtocols {
		if proto != ProtoIMAP && proto != ProtoSMTP && proto != ProtoPOP3 && proto != ProtoSieve {
			p.add("auth.password_passthrough_protocols", "want imap, smtp, pop3 and/or sieve, got %q", proto)
		}
	}
	if c.Auth.PasswordPassthrough && len(c.Auth.PasswordPassthroughProtocols) == 0 {
		p.add("auth.password_passthrough_protocols", "empty while auth.password_passthrough is on: list imap and/or smtp, or turn passthrough off")
	}

	c.validateLimits(&p)
	for _, n := range c.ProxyProtocol.TrustedNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			p.add("proxy_protocol.trusted_networks", "%q is not a CIDR network (e.g. 10.0.0.0/8 or 192.0.2.10/32)", n)
		}
	}
	return errors.Join(p...)
}

// loadProblem reports whether loading found a problem with key (then a
// "required" for the key it fills would only repeat it).
func (c *Config) loadProblem(key string) bool {
	for _, e := range c.loadProblems {
		if fe, ok := e.(*FieldError); ok && fe.Key == key {
			return true
		}
	}
	return false
}

// Bounds of the limits keys.
const (
	minPreloginBytes = 4 << 10
	maxInputBytes    = 16 << 20 // max_line_bytes, max_literal_bytes, max_prelogin_bytes
)

func (c *Config) validateLimits(p *problems) {
	l := &c.Limits
	for _, n := range []struct {
		key string
		n   int
	}{
		{"limits.max_connections", l.MaxConnections},
		{"limits.max_connections_per_ip", l.MaxConnectionsPerIP},
		{"limits.max_prelogin_connections", l.MaxPreloginConnections},
		{"limits.max_prelogin_per_ip", l.MaxPreloginPerIP},
		{"limits.auth_failures_per_ip", l.AuthFailuresPerIP},
	} {
		if n.n < 0 {
			p.add(n.key, "must be >= 0 (0 = no limit)")
		}
	}
	p.between("limits.ipv4_prefix", l.IPv4Prefix, 8, 32, "32")
	p.between("limits.ipv6_prefix", l.IPv6Prefix, 16, 128, "56, a typical customer allocation")
	if l.ConnectionRatePerIP < 0 {
		p.add("limits.connection_rate_per_ip", "must be >= 0 (0 = no rate limit; default 20)")
	}
	if l.ConnectionBurstPerIP < 0 || (l.ConnectionBurstPerIP == 0 && l.ConnectionRatePerIP > 0) {
		p.add("limits.connection_burst_per_ip", "must be at least 1 while limits.connection_rate_per_ip is set (default 100)")
	}
	for _, n := range l.ExemptNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			p.add("limits.exempt_networks", "%q is not a CIDR network (e.g. 192.0.2.10/32 or 2001:db8::/64)", n)
		}
	}
	p.positive("limits.preauth_timeout", l.PreauthTimeout)
	p.positive("limits.handshake_timeout", l.HandshakeTimeout)
	p.positive("limits.command_timeout", l.CommandTimeout)
	if l.DummyReplyTimeout <= 0 || (l.CommandTimeout > 0 && l.DummyReplyTimeout >= l.CommandTimeout) {
		p.add("limits.dummy_reply_timeout", "must be more than 0 and less than limits.command_timeout (%v) (default 5s)", l.CommandTimeout)
	}
	p.positive("limits.data_timeout", l.DataTimeout)
	if l.IdleTimeout < minIdleTimeout {
		p.add("limits.idle_timeout", "must be at least %v (IMAP IDLE needs more than 29m; default 31m)", minIdleTimeout)
	}
	p.between("limits.max_line_bytes", l.MaxLineBytes, 8<<10, maxInputBytes, "65536; a JWT in XOAUTH2 takes several KiB")
	p.between("limits.max_literal_bytes", l.MaxLiteralBytes, 1<<10, maxInputBytes, "65536")
	p.between("limits.max_prelogin_bytes", l.MaxPreloginBytes, minPreloginBytes, maxInputBytes, "65536")
	if l.MaxLineBytes > l.MaxPreloginBytes && l.MaxPreloginBytes >= minPreloginBytes {
		p.add("limits.max_prelogin_bytes", "%d is less than limits.max_line_bytes (%d): a command line must fit in the pre-login budget; raise it or lower max_line_bytes", l.MaxPreloginBytes, l.MaxLineBytes)
	}
	if l.MaxAuthAttempts < 1 {
		p.add("limits.max_auth_attempts", "must be at least 1 (default 3)")
	}
}

// between checks lo <= n <= hi; def is the default and a hint, for the message.
func (p *problems) between(key string, n, lo, hi int, def string) {
	if n < lo || n > hi {
		p.add(key, "must be between %d and %d (default %s)", lo, hi, def)
	}
}

func (c *Config) validateTLS(p *problems, listening bool, check func(certFile, keyFile string) (error, error)) {
	p.oneOf("tls.min_version", c.TLS.MinVersion, "1.2", "1.3")
	need := listening || len(c.TLS.Certificates) > 0
	switch {
	case c.TLS.CertFile == "" && need:
		p.add("tls.cert_file", "required when a listener is set (PEM certificate chain)")
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		p.add("tls.cert_file", "required with tls.key_file")
	}
	switch {
	case c.TLS.KeyFile == "" && need:
		p.add("tls.key_file", "required when a listener is set (PEM private key)")
	case c.TLS.KeyFile == "" && c.TLS.CertFile != "":
		p.add("tls.key_file", "required with tls.cert_file")
	}
	p.pair("tls.", c.TLS.CertFile, c.TLS.KeyFile, check)
	for i, cp := range c.TLS.Certificates {
		key := fmt.Sprintf("tls.certificates[%d]", i)
		if cp.CertFile == "" {
			p.add(key+".cert_file", "required")
		}
		if cp.KeyFile == "" {
			p.add(key+".key_file", "required")
		}
		p.pair(key+".", cp.CertFile, cp.KeyFile, check)
	}
}

// pair checks that the certificate and key files of the section at prefix
// ("tls." or "tls.certificates[1].") can be opened and, with check, loaded.
func (p *problems) pair(prefix, certFile, keyFile string, check func(string, string) (error, error)) {
	certOK := p.file(prefix+"cert_file", certFile)
	keyOK := p.file(prefix+"key_file", keyFile)
	if check == nil || (!certOK && !keyOK) || certFile == "" || keyFile == "" {
		return
	}
	// With one file unreadable (reported above), the other is still
	// checked on its own.
	certErr, keyErr := check(certFile, keyFile)
	if certErr != nil && certOK {
		p.add(prefix+"cert_file", "%v", certErr)
	}
	if keyErr != nil && keyOK {
		p.add(prefix+"key_file", "%v", keyErr)
	}
}

func (c *Config) validateOAuth2(p *problems) {
	o := &c.OAuth2
	p.oneOf("oauth2.mode", o.Mode, ModeUserinfo, ModeIntrospection, ModeJWT, ModeAuto)
	p.url("oauth2.userinfo_url", o.UserinfoURL)
	p.url("oauth2.introspection_url", o.IntrospectionURL)
	p.url("oauth2.issuer", o.Issuer)

	needIntrospection := o.Mode == ModeIntrospection || (o.Mode == ModeAuto && o.IntrospectionURL != "")
	switch o.Mode {
	case ModeUserinfo:
		if o.UserinfoURL == "" {
			p.add("oauth2.userinfo_url", "required with oauth2.mode userinfo (the IdP's userinfo endpoint)")
		}
	case ModeIntrospection:
		if o.IntrospectionURL == "" {
			p.add("oauth2.introspection_url", "required with oauth2.mode introspection (the IdP's RFC 7662 endpoint)")
		}
	case ModeJWT:
		if o.Issuer == "" {
			p.add("oauth2.issuer", "required with oauth2.mode jwt (its JWKS verifies the tokens)")
		}
	case ModeAuto:
		if o.Issuer == "" {
			p.add("oauth2.issuer", "required with oauth2.mode auto")
		}
		if o.UserinfoURL == "" && o.IntrospectionURL == "" {
			p.add("oauth2.userinfo_url", "oauth2.mode auto needs oauth2.userinfo_url or oauth2.introspection_url for opaque tokens")
		}
	}
	if needIntrospection {
		if o.ClientID == "" {
			p.add("oauth2.client_id", "required for introspection (the client mailgate authenticates as)")
		}
		if o.ClientSecret == "" && !c.loadProblem("oauth2.client_secret_file") {
			p.add("oauth2.client_secret", "required for introspection: set oauth2.client_secret_file")
		}
	}
	p.oneOf("oauth2.introspection_auth", o.IntrospectionAuth, IntrospectionBasic, IntrospectionPost)
	p.oneOf("oauth2.xoauth2_error_status", o.XOAUTH2ErrorStatus, XOAUTH2Status400, XOAUTH2Status401)
	if o.UsernameClaim == "" {
		p.add("oauth2.username_claim", "required (e.g. \"email\")")
	}
	for _, d := range o.AllowedDomains {
		p.domain("oauth2.allowed_domains", d)
	}
	if o.CacheTTL < 0 {
		p.add("oauth2.cache_ttl", "must be >= 0 (0 = no cache)")
	}
	if o.NegativeCacheTTL < 0 {
		p.add("oauth2.negative_cache_ttl", "must be >= 0 (0 = no cache)")
	}
	p.positive("oauth2.timeout", o.Timeout)
	p.file("oauth2.ca_file", o.CAFile)
	p.oneOf("oauth2.session_lifetime", o.SessionLifetime, SessionNone, SessionToken, SessionRevalidate)
	if o.SessionLifetime == SessionRevalidate {
		p.positive("oauth2.revalidate_every", o.RevalidateEvery)
	} else if o.RevalidateEvery < 0 {
		p.add("oauth2.revalidate_every", "must be >= 0")
	}
}

func (p *problems) backend(proto string, b Backend, on bool, example string) {
	key := proto + ".backend.address"
	switch {
	case b.Address == "" && on:
		p.add(key, "required when %s.listen_tls or %s.listen_starttls is set (e.g. %q)", proto, proto, example)
	case b.Address != "":
		host, port, err := net.SplitHostPort(b.Address)
		if err != nil || host == "" || !validPort(port, 1) {
			p.add(key, "want host:port (e.g. %q)", example)
		}
	}
	p.oneOf(proto+".backend.tls", b.TLS, BackendTLSNone, BackendTLSStartTLS, BackendTLSImplicit)
	p.file(proto+".backend.ca_file", b.CAFile)
}

func (p *problems) listen(key, addr string) {
	if addr == "" {
		return
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || !validPort(port, 0) {
		p.add(key, "want [host]:port (e.g. \":993\" or \"127.0.0.1:9090\"); empty disables")
	}
}

func validPort(s string, min int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= min && n <= 65535
}

func (p *problems) positive(key string, d time.Duration) {
	if d <= 0 {
		p.add(key, "must be a positive duration (e.g. \"30s\")")
	}
}

// url checks an IdP URL; the value is not echoed (it may hold credentials).
func (p *problems) url(key, s string) {
	if s == "" {
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		p.add(key, "want an http(s) URL with a host (e.g. \"https://auth.example.com/...\")")
	}
}

// file checks that path ("" = not set) is a readable regular file; false
// means a problem was added.
func (p *problems) file(key, path string) bool {
	if path == "" {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		p.add(key, "cannot read %s: %v", path, err)
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		p.add(key, "%s is a directory, want a file", path)
		return false
	}
	return true
}

// Warnings returns remarks that do not stop mailgate but should be logged at
// startup: aliases used while loading, unknown MAILGATE_* variables, and
// risky but valid settings.
func (c *Config) Warnings() []string {
	w := slices.Clone(c.notes)
	imapOn, smtpOn := c.On(ProtoIMAP), c.On(ProtoSMTP)
	if d := c.Limits.IdleTimeout; d >= minIdleTimeout && d < idleWarnBelow {
		w = append(w, fmt.Sprintf("limits.idle_timeout: %v is below %v; IMAP clients in IDLE will be cut off", d, idleWarnBelow))
	}
	for _, b := range []struct {
		proto  string
		b      Backend
		on     bool
		master bool
	}{
		{"imap", c.IMAP.Backend, imapOn, true},
		{"smtp", c.SMTP.Backend, smtpOn, c.SMTP.Backend.Login == LoginMaster},
		{ProtoPOP3, c.POP3.Backend, c.On(ProtoPOP3), true},
		{ProtoSieve, c.Sieve.Backend, c.On(ProtoSieve), true},
	} {
		if !b.on {
			continue
		}
		if b.b.TLS == BackendTLSNone && b.master {
			w = append(w, b.proto+".backend.tls: none sends the master password unencrypted; use it only on a private network")
		} else if b.b.TLS == BackendTLSNone && c.Auth.PasswordPassthroughFor(b.proto) {
			w = append(w, b.proto+".backend.tls: none sends users' passwords (auth.password_passthrough) unencrypted; use it only on a private network")
		}
		if c.Auth.PasswordPassthroughFor(b.proto) && b.b.ClientIP == ClientIPNone {
			pass := "xclient or proxy"
			if b.proto == ProtoIMAP {
				pass = "id or proxy"
			}
			w = append(w, b.proto+".backend.client_ip: none with auth.password_passthrough: the backend counts wrong passwords against mailgate's address and slows down every user's login; pass the client's address ("+pass+")")
		}
		if b.b.TLS != BackendTLSNone && b.b.InsecureSkipVerify {
			w = append(w, b.proto+".backend.insecure_skip_verify: the backend's certificate is not checked")
		}
	}
	for _, u := range []struct{ key, val string }{
		{"oauth2.userinfo_url", c.OAuth2.UserinfoURL},
		{"oauth2.introspection_url", c.OAuth2.IntrospectionURL},
		{"oauth2.issuer", c.OAuth2.Issuer},
	} {
		if pu, err := url.Parse(u.val); err == nil && pu.Scheme == "http" && !isLoopback(pu.Hostname()) {
			w = append(w, u.key+": plain http, tokens travel unencrypted")
		}
	}
	if (c.OAuth2.Mode == ModeJWT || c.OAuth2.Mode == ModeAuto) && len(c.Audiences()) == 0 {
		w = append(w, "oauth2.audiences: empty (and no clients), so a JWT issued to any client of the issuer is accepted")
	}
	if c.OAuth2.Mode == ModeUserinfo && len(c.OAuth2.Audiences) > 0 {
		w = append(w, "oauth2.audiences: not checked in oauth2.mode userinfo (the userinfo answer names no audience); use jwt or introspection to restrict the clients")
	}
	w = append(w, c.onboardingWarnings()...)
	if l := c.Limits; l.MaxLiteralBytes > l.MaxPreloginBytes && l.MaxPreloginBytes > 0 {
		w = append(w, fmt.Sprintf("limits.max_literal_bytes: %d is more than limits.max_prelogin_bytes (%d), which caps literals too", l.MaxLiteralBytes, l.MaxPreloginBytes))
	}
	return w
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
