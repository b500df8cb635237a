package main

import (
	"fmt"
	"io"
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
Every certificate/key pair is loaded as "serve" will load it. It first
says which configuration file it read, or that there was none at the
default path.
Exit status 0: valid; 1: problems; 2: wrong flags.
`

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("check-config", checkConfigHelp, stdout, stderr).withConfig()
	offline := cmd.fs.Bool("offline", false, "do not connect to the backends")
	loginAs := cmd.fs.String("login-as", "", "also log in to each backend as the master user on behalf of this mailbox")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	cfg, err := cmd.loadConfig()
	fmt.Fprintf(stderr, "reading %s\n", cmd.source)
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	stdout.Write(out)
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if w := openFilesAdvice(cfg, hardOpenFiles()); w != "" {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if err := validate(cfg); err != nil {
		cmd.problems("the configuration has problems", err)
		return 1
	}
	if !*offline && !reportBackends(cfg, *loginAs, stderr) {
		return 1
	}
	fmt.Fprintln(stderr, "configuration OK")
	return 0
}
