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
Exit status 0: valid; 1: problems.
`

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	cfg, _, err := loadConfig("check-config", args, stderr, checkConfigHelp)
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
	fmt.Fprintln(stderr, "configuration OK")
	return 0
}
