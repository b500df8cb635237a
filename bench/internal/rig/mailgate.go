package rig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// MailgateOptions configure StartMailgate.
type MailgateOptions struct {
	Binary  string           // the mailgate binary
	Dir     string           // where the config and log go (must exist)
	Name    string           // file name prefix in Dir; "" = "mailgate"
	Dovecot *testenv.Dovecot // IMAP backend (plain, master login, ID x-originating-ip)
	// Backend is the IMAP backend when Dovecot is nil (e.g. internal/demo's).
	Backend *Backend
	// Postfix is the SMTP backend (submission + STARTTLS, master login); nil
	// = Backend.SMTPAddr, and no SMTP listener when that is "" too.
	Postfix *testenv.Postfix
	// UserinfoURL is oauth2.userinfo_url (mode userinfo).
	UserinfoURL string
	// CacheTTL is oauth2.cache_ttl; 0 disables the validation cache.
	CacheTTL time.Duration
	// STARTTLS also opens the IMAP STARTTLS listener (STARTTLSAddr) and,
	// with an SMTP backend, the SMTP submission STARTTLS listener
	// (SubmissionAddr).
	STARTTLS bool
	// Limits, when not nil, is the whole limits section (key: YAML value);
	// nil = the benchmarks' generous defaults (see also IdleLimits). Keys
	// the binary does not know (an older mailgate) are left out and listed
	// in Mailgate.Dropped.
	Limits map[string]string
	// AppPasswordDB, when not "", turns app_passwords on with this store
	// (e.g. "sqlite:///dir/app-passwords.db"), for IMAP only, without the
	// self-service page or a key file: `LOGIN user mgp_...` then opens the
	// backend session as the master user. The binary must have app
	// passwords (SupportsAppPasswords).
	AppPasswordDB string
	// Prepare, when set, runs with the configuration file once it is
	// written, before mailgate starts (e.g. to make app passwords with
	// CreateAppPassword in the store mailgate is to open); an error stops
	// the start.
	Prepare func(configPath string) error
}

// Backend is a plain-TCP IMAP server taking Dovecot-style master logins,
// optionally a plain-TCP SMTP submission server taking master logins (AUTH
// PLAIN with authzid), and the certificate mailgate shows its clients.
type Backend struct {
	IMAPAddr                   string
	SMTPAddr                   string // "" = no SMTP listener (unless MailgateOptions.Postfix)
	MasterUser, MasterPassword string
	CertFile, KeyFile          string // PEM, for mailgate's listeners
	CAPEM                      []byte // what a client trusts for CertFile
}

// benchLimits are the limits of the benchmarks: nothing in their way (every
// client comes from 127.0.0.1, one client network). max_connections is
// lowered by mailgate itself to fit the open-files limit (see IdleLimits).
var benchLimits = map[string]string{
	"max_connections":        "30000",
	"max_connections_per_ip": "30000",
	"connection_rate_per_ip": "0",
	"max_prelogin_per_ip":    "0",
	"auth_failures_per_ip":   "100000",
	"preauth_timeout":        "60s",
	"idle_timeout":           "31m",
}

// IdlePreloginSlots is limits.max_prelogin_connections of a mailgate that is
// to hold MaxSessions idle sessions: room for the 32 sessions the idle
// measurements open at a time (and mgload's 8 login clients).
const IdlePreloginSlots = 32

// mailgate's own descriptor accounting (cmd/mailgate/fdlimit.go): two
// descriptors per connection, logged-in or pre-login, and 256 kept for
// everything else; caps that do not fit are lowered at start-up.
const (
	mgFDsPerConn = 2
	mgFDHeadroom = 256
)

// NoFileHardLimit is this process's open-files hard limit, which the
// proxies started here inherit (0 if unknown).
func NoFileHardLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Max
}

// MaxSessions is how many idle sessions every setup can hold within the
// open-files hard limit: a proxy holds two descriptors per session, and
// mailgate counts two per pre-login slot too and keeps 256 for itself, so
// (limit - 256) / 2 - IdlePreloginSlots (9,840 with 20,000 descriptors).
func MaxSessions() int {
	lim := NoFileHardLimit()
	if lim == 0 || lim > 1<<30 {
		return 1 << 30
	}
	return max(int((lim-mgFDHeadroom)/mgFDsPerConn)-IdlePreloginSlots, 0)
}

// IdleLimits is the limits section of a mailgate that is to hold
// MaxSessions idle sessions: benchLimits with max_connections MaxSessions
// and max_prelogin_connections IdlePreloginSlots, which together fit the
// open-files limit exactly, so that mailgate lowers neither.
func IdleLimits() map[string]string {
	l := maps.Clone(benchLimits)
	l["max_connections"] = fmt.Sprint(MaxSessions())
	l["max_prelogin_connections"] = fmt.Sprint(IdlePreloginSlots)
	return l
}

// Mailgate is a running `mailgate serve`.
type Mailgate struct {
	IMAPSAddr    string // implicit-TLS IMAP listener
	STARTTLSAddr string // IMAP STARTTLS listener ("" unless MailgateOptions.STARTTLS)
	SMTPSAddr    string // implicit-TLS submission listener ("" without an SMTP backend)
	// SubmissionAddr is the SMTP submission STARTTLS listener ("" unless
	// MailgateOptions.STARTTLS with an SMTP backend).
	SubmissionAddr string
	HTTPAddr       string // http.listen (/metrics, /debug when the binary has them)
	LogPath        string
	ConfigPath     string
	// Dropped are the limits keys this binary did not know, left out.
	Dropped []string
	g       *group
}

// StartMailgate writes a configuration and starts mailgate with it; it
// returns once the IMAP listener greets over TLS.
func StartMailgate(ctx context.Context, o MailgateOptions) (*Mailgate, error) {
	if o.Name == "" {
		o.Name = "mailgate"
	}
	be := o.Backend
	if o.Dovecot != nil {
		be = &Backend{IMAPAddr: o.Dovecot.IMAPAddr, MasterUser: o.Dovecot.MasterUser, MasterPassword: o.Dovecot.MasterPassword,
			CertFile: o.Dovecot.CertFile, KeyFile: o.Dovecot.KeyFile, CAPEM: o.Dovecot.CACertPEM}
	}
	if be == nil {
		return nil, errors.New("rig: mailgate needs a Dovecot or a Backend")
	}
	m := &Mailgate{LogPath: filepath.Join(o.Dir, o.Name+".log"), ConfigPath: filepath.Join(o.Dir, o.Name+".yaml")}
	var err error
	if m.IMAPSAddr, err = FreePort(); err != nil {
		return nil, err
	}
	if m.HTTPAddr, err = FreePort(); err != nil {
		return nil, err
	}
	if o.STARTTLS {
		if m.STARTTLSAddr, err = FreePort(); err != nil {
			return nil, err
		}
	}
	smtp := `  listen_tls: ""
  listen_starttls: ""
`
	if o.Postfix != nil || be.SMTPAddr != "" {
		if m.SMTPSAddr, err = FreePort(); err != nil {
			return nil, err
		}
		if o.STARTTLS {
			if m.SubmissionAddr, err = FreePort(); err != nil {
				return nil, err
			}
		}
		// Postfix requires STARTTLS before AUTH; a plain backend (e.g.
		// internal/demo's, wired as `mailgate demo` does) takes AUTH in the clear.
		backend := fmt.Sprintf(`    address: %q
    tls: none
`, be.SMTPAddr)
		if o.Postfix != nil {
			backend = fmt.Sprintf(`    address: %q
    tls: starttls
    ca_file: %q
    server_name: %q
`, o.Postfix.SubmissionAddr, o.Postfix.CAFile, testenv.ServerName)
		}
		smtp = fmt.Sprintf(`  listen_tls: %q
  listen_starttls: %q
  hostname: mail.example.test
  max_message_bytes: 104857600
  backend:
%s    login: master
    client_ip: none
`, m.SMTPSAddr, m.SubmissionAddr, backend)
	}
	pwFile := filepath.Join(o.Dir, o.Name+".master")
	if err := os.WriteFile(pwFile, []byte(be.MasterPassword), 0o600); err != nil {
		return nil, err
	}
	limits := o.Limits
	if limits == nil {
		limits = benchLimits
	}
	appPass := ""
	if o.AppPasswordDB != "" {
		appPass = fmt.Sprintf(`app_passwords:
  enabled: true
  database: %q
  protocols: [imap]
`, o.AppPasswordDB)
	}
	write := func() error {
		conf := fmt.Sprintf(`# generated by bench/internal/rig
log:
  level: warn
tls:
  cert_file: %q
  key_file: %q
master:
  user: %q
  password_file: %q
imap:
  listen_tls: %q
  listen_starttls: %q
  backend:
    address: %q
    tls: none
    client_ip: id
smtp:
%soauth2:
  mode: userinfo
  userinfo_url: %q
  cache_ttl: %s
  negative_cache_ttl: 0s
  timeout: 10s
%slimits:
%shttp:
  listen: %q
`, be.CertFile, be.KeyFile, be.MasterUser, pwFile,
			m.IMAPSAddr, m.STARTTLSAddr, be.IMAPAddr, smtp, o.UserinfoURL, o.CacheTTL, appPass, yamlMap(limits), m.HTTPAddr)
		return os.WriteFile(m.ConfigPath, []byte(conf), 0o600)
	}
	if err := write(); err != nil {
		return nil, err
	}
	// An older binary refuses keys it does not know: leave them out.
	if unknown := unknownLimits(o.Binary, m.ConfigPath); len(unknown) > 0 {
		limits = maps.Clone(limits)
		for _, k := range unknown {
			delete(limits, k)
		}
		m.Dropped = unknown
		if err := write(); err != nil {
			return nil, err
		}
	}
	if o.Prepare != nil {
		if err := o.Prepare(m.ConfigPath); err != nil {
			return nil, err
		}
	}
	m.g, err = startGroup("mailgate", o.Binary, []string{"serve", "--config", m.ConfigPath}, m.LogPath, syscall.SIGKILL)
	if err != nil {
		return nil, err
	}
	if err := waitIMAP(ctx, m.g, m.IMAPSAddr, ClientTLS(be.CAPEM), m.LogPath); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// yamlMap writes m as the indented body of a YAML section, keys sorted.
func yamlMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "  %s: %s\n", k, m[k])
	}
	return b.String()
}

// unknownLimits asks `mailgate check-config` about the configuration and
// returns the limits keys it reports as invalid ("'limits' has invalid
// keys: a, b").
func unknownLimits(binary, conf string) []string {
	out, err := exec.Command(binary, "check-config", "--config", conf).CombinedOutput()
	if err == nil {
		return nil
	}
	_, rest, ok := strings.Cut(string(out), "'limits' has invalid keys: ")
	if !ok {
		return nil
	}
	line, _, _ := strings.Cut(rest, "\n")
	var keys []string
	for _, k := range strings.Split(line, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// Exited reports whether the mailgate process has ended.
func (m *Mailgate) Exited() bool { return m.g.exited() }

// LogTail is the last n lines of mailgate's log.
func (m *Mailgate) LogTail(n int) string { return tail(m.LogPath, n) }

// PID is the mailgate process.
func (m *Mailgate) PID() int { return m.g.pid() }

// Stop ends mailgate (SIGTERM, then SIGKILL) and waits for it.
func (m *Mailgate) Stop() { m.g.stop() }

// ClientTLS is a client configuration that trusts only caPEM, for
// testenv.ServerName, without session resumption (every connection pays a
// full handshake).
func ClientTLS(caPEM []byte) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{RootCAs: pool, ServerName: testenv.ServerName, MinVersion: tls.VersionTLS12}
}

// ErrNoMetrics is returned by Metric when the binary serves no /metrics.
var ErrNoMetrics = errors.New("no /metrics endpoint")
