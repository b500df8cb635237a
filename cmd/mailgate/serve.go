package main

import (
	"context"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/config"
)

// shutdownDrain bounds a graceful shutdown.
const shutdownDrain = 30 * time.Second

const serveHelp = `Usage: mailgate serve [--config FILE] [flags]

Runs the proxy: IMAP on imap.listen_tls (993) and imap.listen_starttls (143),
SMTP submission on smtp.listen_tls (465) and smtp.listen_starttls (587).
SIGTERM or SIGINT shuts down gracefully: /readyz answers 503 for
cluster.drain_delay while the listeners still accept, then they close and
sessions drain (up to 30 s); a second one ends the process at once. SIGHUP re-reads the certificate files and the
configuration, and applies log.level, the oauth2 section (except
oauth2.session_lifetime, revalidate_every and xoauth2_error_status), clients,
the discovery documents and cluster.drain_delay; other changes are logged and
need a restart.
`

func serveCommand(stdout, stderr io.Writer) *command {
	return newCommand("serve", serveHelp, stdout, stderr).withConfig()
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cmd := serveCommand(stdout, stderr)
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	cfg, err := cmd.loadConfig()
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	if err := validate(cfg); err != nil {
		cmd.problems("the configuration has problems ("+cmd.source+")", err)
		return 1
	}
	log, level := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	log.Info("configuration loaded", "from", cmd.source)
	logConfigWarnings(log, cfg)
	a, err := newApp(cfg, log, openFilesLimit(log))
	if a != nil {
		a.level = level
	}
	if err != nil {
		log.Error("startup failed", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second SIGTERM or SIGINT ends the process at once
	}()
	go a.reloadOnSIGHUP(ctx, func() (*config.Config, error) {
		c := serveCommand(io.Discard, io.Discard)
		if err := c.fs.Parse(args); err != nil {
			return nil, err
		}
		return c.loadConfig()
	})
	log.Info("mailgate started", "version", versionString())
	if err := a.run(ctx, shutdownDrain); err != nil {
		return 1
	}
	log.Info("mailgate stopped")
	return 0
}

// logConfigWarnings logs each of the configuration's warnings once.
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config", "warning", w)
	}
}

// openFilesLimit raises the open-files limit as far as allowed and returns
// it (0: unknown), for sizing the connection caps.
func openFilesLimit(log *slog.Logger) uint64 {
	limit, err := raiseOpenFiles()
	if err != nil {
		log.Warn("cannot raise the open-files limit", "limit", limit, "err", err)
	}
	return limit
}
