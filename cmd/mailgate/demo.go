package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/demo"
)

const demoHelp = `Usage: mailgate demo [flags]

Starts a self-contained demo on this machine: an in-process IMAP mailbox
server that accepts Dovecot-style master-user logins, an SMTP server that
delivers into it, a small OpenID issuer that mints a token for
demo@example.test, a throwaway self-signed certificate, and mailgate in front
of all of them, wired exactly as in production, with its operations endpoint
(/metrics, /healthz, /readyz). It prints the ports, the token, curl commands
to read the inbox and send a message, and the operations commands (metrics,
"mailgate healthcheck", "mailgate token").
Stop it with Ctrl-C. Nothing it creates outlives it.
`

func runDemo(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("demo", demoHelp, stdout, stderr)
	fs := cmd.fs
	host := fs.String("host", "127.0.0.1", "address to listen on")
	imaps := fs.Int("imaps-port", 1993, "IMAPS (implicit TLS) port; 0 picks a free one")
	imap := fs.Int("imap-port", 1143, "IMAP (STARTTLS) port; 0 picks a free one")
	smtps := fs.Int("smtps-port", 1465, "SMTP submission (implicit TLS) port; 0 picks a free one")
	submission := fs.Int("submission-port", 1587, "SMTP submission (STARTTLS) port; 0 picks a free one")
	httpPort := fs.Int("http-port", 0, "operations endpoint port (/metrics, /healthz, /readyz); 0 picks a free one")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	dir, err := os.MkdirTemp("", "mailgate-demo-")
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	defer os.RemoveAll(dir)

	d, err := demo.Start(ctx)
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	defer d.Close()

	certFile, keyFile, err := certs.WritePEM(dir, "localhost", *host)
	if err != nil {
		return cmd.fail(1, "certificate: %v", err)
	}
	hp := func(port int) string { return net.JoinHostPort(*host, strconv.Itoa(port)) }
	cfg := config.Default()
	cfg.Cluster.DrainDelay = 0 // one process, no load balancer
	cfg.Log.Level = *logLevel
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.Master = config.Master{User: d.MasterUser, Password: d.MasterPassword}
	cfg.IMAP.ListenTLS, cfg.IMAP.ListenStartTLS = hp(*imaps), hp(*imap)
	cfg.IMAP.Backend = config.Backend{Address: d.IMAPAddr, TLS: "none", ClientIP: "id"}
	cfg.SMTP.ListenTLS, cfg.SMTP.ListenStartTLS = hp(*smtps), hp(*submission)
	cfg.SMTP.Hostname = "mailgate.demo"
	cfg.SMTP.Backend = config.Backend{Address: d.SMTPAddr, TLS: "none", Login: "master", ClientIP: "none"}
	cfg.OAuth2.Mode = "userinfo"
	cfg.OAuth2.Issuer = d.Issuer.URL()
	cfg.OAuth2.UserinfoURL = d.Issuer.URL() + "/userinfo"
	cfg.HTTP.Listen = hp(*httpPort)
	if err := validate(&cfg); err != nil {
		cmd.problems("internal configuration error", err)
		return 1
	}
	log, _ := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	a, err := newApp(&cfg, log, openFilesLimit(log))
	if err != nil {
		return cmd.fail(1, "%v\n(if a port is busy, pick others with --imaps-port etc., or 0 for free ones)", err)
	}

	msgFile := filepath.Join(dir, "hello.eml")
	msg := "From: " + d.User + "\r\nTo: " + d.User + "\r\nSubject: Hello through mailgate\r\n\r\nSent with a bearer token.\r\n"
	if err := os.WriteFile(msgFile, []byte(msg), 0o644); err != nil {
		return cmd.fail(1, "%v", err)
	}
	os.WriteFile(filepath.Join(dir, "token"), []byte(d.Token+"\n"), 0o600)
	// The configuration "mailgate healthcheck" and "mailgate token" read.
	opsConfig := filepath.Join(dir, "mailgate.yaml")
	yaml := fmt.Sprintf("http:\n  listen: %q\noauth2:\n  mode: %s\n  issuer: %q\n  userinfo_url: %q\n",
		a.ops.ln.Addr().String(), cfg.OAuth2.Mode, cfg.OAuth2.Issuer, cfg.OAuth2.UserinfoURL)
	if err := os.WriteFile(opsConfig, []byte(yaml), 0o644); err != nil {
		return cmd.fail(1, "%v", err)
	}
	printDemo(stdout, a, d, demoFiles{dir: dir, cert: certFile, msg: msgFile, config: opsConfig, self: selfCommand()})

	if err := a.run(ctx, 5*time.Second); err != nil {
		return 1
	}
	return 0
}

// demoFiles are the demo's files and how to run this binary again.
type demoFiles struct {
	dir, cert, msg, config string
	self                   string // the command that runs mailgate, for the printed examples
}

// selfCommand is how the printed examples run mailgate: this binary by its
// absolute path, or "go run ./cmd/mailgate" under go run (whose binary is
// temporary), or "mailgate" when it was found in PATH.
func selfCommand() string {
	arg0 := os.Args[0]
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, "go-build") {
		return "go run ./cmd/mailgate"
	}
	if !strings.Contains(arg0, "/") {
		return arg0
	}
	if abs, err := filepath.Abs(arg0); err == nil {
		arg0 = abs
	}
	return shellQuote(arg0)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func printDemo(w io.Writer, a *app, d *demo.Demo, f demoFiles) {
	imaps, smtps := a.addr("imap.listen_tls"), a.addr("smtp.listen_tls")
	ops := a.ops.ln.Addr().String()
	curl := fmt.Sprintf("curl --silent --show-error --cacert %s --oauth2-bearer \"$TOKEN\" --user %s:", f.cert, d.User)
	fmt.Fprintf(w, `
  mailgate DEMO - everything below runs inside this one process: an in-memory
  mailbox server, an SMTP server that delivers into it, a toy OpenID issuer and a
  throwaway self-signed certificate. It is a demo, not a mail server: nothing is
  kept, and the token below is for demo@example.test only.

  IMAPS       %s   (implicit TLS)
  IMAP        %s   (STARTTLS)
  SMTPS       %s   (implicit TLS)
  Submission  %s   (STARTTLS)
  Operations  %s   (/metrics, /healthz, /readyz; keep it private in production)
  Issuer      %s   (userinfo, JWKS, discovery)
  Certificate %s
  Config      %s   (http and oauth2, for healthcheck and token)
  User        %s   (token valid 24 h; also in %s)

Copy and paste into a shell:

export TOKEN='%s'

# read the first message of the inbox
%s 'imaps://%s/INBOX;UID=1'

# send a message to yourself
%s --mail-from %s --mail-rcpt %s --upload-file %s 'smtps://%s' && echo 'sent: read it back with the next command'

# read it back (the second message)
%s 'imaps://%s/INBOX;UID=2'

# operations: the Prometheus metrics (logins so far), the health check Docker's
# HEALTHCHECK runs, and what mailgate makes of the token (read from stdin)
curl --silent --show-error http://%s/metrics | grep '^mailgate_authentications_total'
%s healthcheck --config %s
printf '%%s\n' "$TOKEN" | %s token --config %s

Press Ctrl-C to stop.
`,
		imaps, a.addr("imap.listen_starttls"), smtps, a.addr("smtp.listen_starttls"), ops, d.Issuer.URL(), f.cert,
		f.config, d.User, filepath.Join(f.dir, "token"),
		d.Token,
		curl, imaps,
		curl, d.User, d.User, f.msg, smtps,
		curl, imaps,
		ops,
		f.self, f.config,
		f.self, f.config)
}
