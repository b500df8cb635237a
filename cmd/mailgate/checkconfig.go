package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

const checkConfigHelp = `Usage: mailgate check-config [--config FILE] [flags]

Loads the configuration exactly as "mailgate serve" would (file, then
MAILGATE_* environment variables, then flags), prints the effective
configuration with secrets redacted, and lists every problem found.
Warnings (risky but valid settings, connection caps that do not fit this
process's hard open-files limit) do not change the exit status.

Then, unless --offline, it connects to each backend the way a login would
(PROXY header, TLS or STARTTLS, client-address forwarding) and reports a
backend configuration that refuses mailgate's master login (cleartext
refused, PROXY from an untrusted address, no AUTH PLAIN, no XCLIENT) with
the setting to change. --login-as USER goes on to log in as the master user
on behalf of USER (an existing mailbox): wrong master credentials show
there. An unreachable backend is a warning.
Exit status 0: valid; 1: problems.
`

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	var offline bool
	var loginAs string
	cfg, _, err := loadConfig("check-config", args, stderr, checkConfigHelp, func(fs *pflag.FlagSet) {
		fs.BoolVar(&offline, "offline", false, "do not connect to the backends")
		fs.StringVar(&loginAs, "login-as", "", "also log in to each backend as the master user on behalf of this mailbox")
	})
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 1
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		fmt.Fprintf(stderr, "mailgate: %v\n", err)
		return 1
	}
	stdout.Write(out)
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if w := openFilesAdvice(cfg, hardOpenFiles()); w != "" {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "the configuration has problems:\n%v\n", err)
		return 1
	}
	if !offline && !reportBackends(cfg, loginAs, stderr) {
		return 1
	}
	fmt.Fprintln(stderr, "configuration OK")
	return 0
}
