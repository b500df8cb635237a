package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/mailgate/mailgate/config"
)

const defaultConfigPath = "/etc/mailgate/mailgate.yaml"

// shutdownDrain bounds a graceful shutdown.
const shutdownDrain = 30 * time.Second

// loadConfig parses the flags of a command that reads the configuration and
// loads it: --config (or MAILGATE_CONFIG), then env, then the main flags.
// The default file may be absent (configuration from the environment only).
func loadConfig(name string, args []string, stderr io.Writer, help string, extra ...func(*pflag.FlagSet)) (*config.Config, *pflag.FlagSet, error) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, help)
		fmt.Fprintf(stderr, "\nFlags:\n%s", fs.FlagUsages())
	}
	path := fs.String("config", "", "configuration file (default "+defaultConfigPath+", or $MAILGATE_CONFIG)")
	config.RegisterFlags(fs)
	for _, f := range extra {
		f(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	p := *path
	if p == "" {
		p = os.Getenv("MAILGATE_CONFIG")
	}
	if p == "" {
		p = defaultConfigPath
		if _, err := os.Stat(p); errors.Is(err, iofs.ErrNotExist) {
			p = ""
		}
	}
	cfg, err := config.Load(p, fs, os.Environ())
	return cfg, fs, err
}

const serveHelp = `Usage: mailgate serve [--config FILE] [flags]

Runs the proxy: IMAP on imap.listen_tls (993) and imap.listen_starttls (143),
SMTP submission on smtp.listen_tls (465) and smtp.listen_starttls (587).
SIGTERM or SIGINT shuts down gracefully; SIGHUP reloads the certificates.
`

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, _, err := loadConfig("serve", args, stderr, serveHelp)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 1
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "mailgate: the configuration has problems:\n%v\n", err)
		return 1
	}
	log, level := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	for _, w := range cfg.Warnings() {
		log.Warn("config", "warning", w)
	}
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
	go a.reloadOnSIGHUP(ctx, func() (*config.Config, error) {
		c, _, err := loadConfig("serve", args, io.Discard, serveHelp)
		return c, err
	})
	log.Info("mailgate started", "version", version)
	if err := a.run(ctx, shutdownDrain); err != nil {
		return 1
	}
	log.Info("mailgate stopped")
	return 0
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
