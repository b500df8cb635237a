package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/mailgate/bench/internal/imapc"
	"github.com/mailgate/mailgate/bench/internal/proc"
	"github.com/mailgate/mailgate/bench/internal/rig"
	"github.com/mailgate/mailgate/bench/internal/smtpc"
	"github.com/mailgate/mailgate/internal/testenv"
)

const (
	// loadUsers is how many mailboxes (and tokens) the login and idle
	// benchmarks spread over.
	loadUsers = 100
	// bigUser owns the FETCH mailbox; sinkUser receives the SMTP messages.
	bigUser  = "big@example.test"
	sinkUser = "sink@example.test"
	password = "password"
	// cacheTTL is mailgate's oauth2.cache_ttl in the cached setup.
	cacheTTL = 5 * time.Minute
	// startTimeout bounds starting one daemon.
	startTimeout = 60 * time.Second
)

// baseDovecotExtra is added to every Dovecot: many sessions per user and
// address are allowed (every client comes from 127.0.0.1).
const baseDovecotExtra = `
protocol imap {
  mail_max_userip_connections = 100000
}
`

// env is everything the suites talk to.
type env struct {
	o       options
	dir     string
	hydra   *testenv.Hydra
	counter *rig.Counter
	dc      *testenv.Dovecot
	pf      *testenv.Postfix
	mg      *rig.Mailgate // cache on
	mgCold  *rig.Mailgate // cache off
	authh   *rig.AuthHTTP
	ngx     *rig.Nginx

	users       []testenv.User
	names       []string          // load user addresses
	tokens      map[string]string // address -> access token
	tlsConf     *tls.Config
	userinfo    string // the counting proxy's userinfo URL
	cacheActive bool

	// App passwords (the "mailgate, app password" column), on the cached
	// mailgate (e.mg) when the binary has them: the store, and one
	// password per load user (address -> mgp_...; nil: no column).
	appPassDB string
	appPass   map[string]string
	// appPassWhy says why there is no app-password column ("" when there is).
	appPassWhy string

	stops []func()
}

func newEnv(ctx context.Context, o options) (*env, error) {
	if _, err := testenv.Check(testenv.PartAll); err != nil {
		return nil, err
	}
	e := &env{o: o}
	var err error
	if e.dir, err = os.MkdirTemp("", "mgbench-"); err != nil {
		return nil, err
	}
	e.stops = append(e.stops, func() {
		if !o.keep {
			os.RemoveAll(e.dir)
		}
	})
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	log.Printf("starting Hydra")
	if e.hydra, err = testenv.NewHydra(sctx, testenv.HydraOptions{AccessTokenLifespan: 4 * time.Hour}); err != nil {
		return e, fmt.Errorf("hydra: %w", err)
	}
	e.stops = append(e.stops, func() { e.hydra.Stop() })
	u, err := url.Parse(e.hydra.UserinfoURL)
	if err != nil {
		return e, err
	}
	if e.counter, err = rig.NewCounter(e.hydra.PublicURL, u.Path); err != nil {
		return e, err
	}
	e.stops = append(e.stops, func() { e.counter.Close() })
	e.userinfo = e.counter.URL + u.Path

	e.users = rig.LoadUsers(loadUsers)
	for _, u := range e.users {
		e.names = append(e.names, u.Name)
	}
	all := append(append([]testenv.User(nil), e.users...),
		testenv.User{Name: bigUser, Password: password}, testenv.User{Name: sinkUser, Password: password})

	log.Printf("starting Dovecot and Postfix")
	e.dc, err = testenv.NewDovecot(sctx, testenv.DovecotOptions{
		Users:       all,
		OAuth2:      &testenv.DovecotOAuth2{IntrospectionURL: e.userinfo},
		ExtraConfig: baseDovecotExtra,
	})
	if err != nil {
		return e, fmt.Errorf("dovecot: %w", err)
	}
	e.stops = append(e.stops, func() { e.dc.Stop() })
	e.tlsConf = rig.ClientTLS(e.dc.CACertPEM)
	e.pf, err = testenv.NewPostfix(sctx, e.dc, testenv.PostfixOptions{ExtraMain: "message_size_limit = 209715200\n"})
	if err != nil {
		return e, fmt.Errorf("postfix: %w", err)
	}
	e.stops = append(e.stops, func() { e.pf.Stop() })

	log.Printf("minting %d tokens", len(e.names)+2)
	if e.tokens, err = rig.MintTokens(ctx, e.hydra, append(append([]string(nil), e.names...), bigUser, sinkUser), 1); err != nil {
		return e, err
	}

	if rig.SupportsAppPasswords(o.mailgate) {
		e.appPassDB = "sqlite://" + filepath.Join(e.dir, "app-passwords.db")
	} else {
		e.appPassWhy = "this mailgate binary has no app passwords (no `app-passwords` command)"
		log.Printf("no app-password column: %s", e.appPassWhy)
	}
	log.Printf("starting mailgate (cache on and off), auth_http and nginx")
	if e.mg, err = e.startMailgate(ctx, "mailgate", cacheTTL); err != nil {
		return e, err
	}
	if e.mgCold, err = e.startMailgate(ctx, "mailgate-cold", 0); err != nil {
		return e, err
	}
	if e.authh, err = rig.NewAuthHTTP(e.dc.IMAPAddr, e.dc.MasterUser, e.dc.MasterPassword, all); err != nil {
		return e, err
	}
	e.stops = append(e.stops, func() { e.authh.Close() })
	ndir, err := os.MkdirTemp(e.dir, "nginx-")
	if err != nil {
		return e, err
	}
	e.ngx, err = rig.StartNginx(ctx, rig.NginxOptions{
		Binary: o.nginx, Module: o.nginxModule, Dir: ndir,
		CertFile: e.dc.CertFile, KeyFile: e.dc.KeyFile, CAPEM: e.dc.CACertPEM, AuthHTTP: e.authh.Addr,
	})
	if err != nil {
		return e, fmt.Errorf("nginx: %w", err)
	}
	e.stops = append(e.stops, e.ngx.Stop)

	// Is mailgate's validation cache active? Two logins with one token.
	tok := e.tokens[sinkUser]
	login := func() error { return e.loginMailgate(e.mg, sinkUser, tok) }
	if err := login(); err != nil {
		return e, fmt.Errorf("first mailgate login: %w", err)
	}
	n0 := e.counter.Count()
	if err := login(); err != nil {
		return e, fmt.Errorf("mailgate login: %w", err)
	}
	e.cacheActive = e.counter.Count() == n0
	log.Printf("mailgate validation cache active: %v", e.cacheActive)
	if e.appPass != nil {
		if err := e.loginAppPass(e.mg, e.names[0]); err != nil {
			return e, fmt.Errorf("first app-password login through mailgate: %w", err)
		}
	}
	return e, nil
}

// startMailgate starts a mailgate in front of e.dc and e.pf. The cached
// one (ttl cacheTTL) also takes app passwords when the binary has them;
// the first time, one is made per load user before it starts.
func (e *env) startMailgate(ctx context.Context, name string, ttl time.Duration) (*rig.Mailgate, error) {
	o := rig.MailgateOptions{
		Binary: e.o.mailgate, Dir: e.dir, Name: name,
		Dovecot: e.dc, Postfix: e.pf, UserinfoURL: e.userinfo, CacheTTL: ttl,
	}
	if ttl == cacheTTL && e.appPassDB != "" {
		o.AppPasswordDB = e.appPassDB
		o.Prepare = func(conf string) error { return e.makeAppPasswords(ctx, conf) }
	}
	m, err := rig.StartMailgate(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	e.stops = append(e.stops, m.Stop)
	return m, nil
}

// makeAppPasswords makes one app password per load user with `mailgate
// app-passwords create` on the configuration conf, unless made before.
func (e *env) makeAppPasswords(ctx context.Context, conf string) error {
	if e.appPass != nil {
		return nil
	}
	t0 := time.Now()
	made := make([]string, len(e.names))
	errs := make([]error, len(e.names))
	// One command per password (each ~0.4 s of CPU on the 2-core VM, over
	// half of it system time), as many at once as there are CPUs; SQLite
	// serializes the writes.
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i, u := range e.names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			made[i], errs[i] = rig.CreateAppPassword(ctx, e.o.mailgate, conf, u, "bench")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	e.appPass = make(map[string]string, len(e.names))
	for i, u := range e.names {
		e.appPass[u] = made[i]
	}
	log.Printf("made %d app passwords in %s", len(made), time.Since(t0).Round(time.Millisecond))
	return nil
}

// printLogs prints the tail of every proxy log in the work directory.
func (e *env) printLogs() {
	logs, _ := filepath.Glob(filepath.Join(e.dir, "*.log"))
	more, _ := filepath.Glob(filepath.Join(e.dir, "nginx-*", "error.log"))
	for _, p := range append(logs, more...) {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		log.Printf("--- %s\n%s", p, strings.Join(lines, "\n"))
	}
	if e.dc == nil {
		return
	}
	var bad []string
	for _, l := range strings.Split(e.dc.Log.String(), "\n") {
		if strings.Contains(l, "Error:") || strings.Contains(l, "Warning:") || strings.Contains(l, "Fatal:") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 15 {
		bad = bad[len(bad)-15:]
	}
	if len(bad) > 0 {
		log.Printf("--- %s (errors and warnings)\n%s", e.dc.LogPath, strings.Join(bad, "\n"))
	}
}

// close stops everything, newest first.
func (e *env) close() {
	for i := len(e.stops) - 1; i >= 0; i-- {
		e.stops[i]()
	}
}

func (e *env) versions() []string {
	return []string{
		fmt.Sprintf("versions: %s; %s; Dovecot %s; Postfix %s; %s; Ory Hydra v2.3.0 (in-memory); client: Go crypto/tls, a full handshake per login except in the returning-client rows (tls.ClientSessionCache per client)",
			rig.FirstLine(e.o.mailgate, "version"), rig.FirstLine(e.o.nginx, "-v"), rig.FirstLine("dovecot", "--version"),
			rig.FirstLine("postconf", "-d", "-h", "mail_version"), rig.FirstLine("go", "version")),
	}
}

// Login cycles: connect, TLS, authenticate, LOGOUT.

func (e *env) loginDirect(addr string, tc *tls.Config, user string) error {
	c, err := imapc.Dial(addr, imapc.Options{TLS: tc})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.AuthPlain(user, e.dc.MasterUser, e.dc.MasterPassword); err != nil {
		return err
	}
	return c.Logout()
}

func (e *env) loginXOAUTH2(addr, user, token string) error {
	c, err := imapc.Dial(addr, imapc.Options{TLS: e.tlsConf})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.AuthXOAUTH2(user, token); err != nil {
		return err
	}
	return c.Logout()
}

func (e *env) loginMailgate(m *rig.Mailgate, user, token string) error {
	return e.loginXOAUTH2(m.IMAPSAddr, user, token)
}

// loginAppPass logs in to m with user's app password (IMAP LOGIN).
func (e *env) loginAppPass(m *rig.Mailgate, user string) error {
	c, err := imapc.Dial(m.IMAPSAddr, imapc.Options{TLS: e.tlsConf})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(user, e.appPass[user]); err != nil {
		return err
	}
	return c.Logout()
}

func (e *env) loginNginx(addr, user string) error {
	c, err := imapc.Dial(addr, imapc.Options{TLS: e.tlsConf})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		return err
	}
	return c.Logout()
}

// dovecotCPU is the CPU seconds used so far by dc's live processes plus the
// reaped children of its master.
func dovecotCPU(dc *testenv.Dovecot) float64 {
	master, pids, err := rig.DovecotPIDs(dc)
	if err != nil {
		return 0
	}
	return proc.SumCPU(pids, master)
}

// dovecotPIDs lists dc's processes (nil if its master is gone).
func dovecotPIDs(dc *testenv.Dovecot) func() []int {
	return func() []int {
		_, pids, _ := rig.DovecotPIDs(dc)
		return pids
	}
}

// message builds a message for the SMTP and FETCH benchmarks.
func message(from, to, subject string, size int) []byte {
	return smtpc.Message(from, to, subject, size)
}
