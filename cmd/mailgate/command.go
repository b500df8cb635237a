package main

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
)

const defaultConfigPath = "/etc/mailgate/mailgate.yaml"

// command is what every subcommand shares: its own flags and help, and one
// format for errors ("mailgate NAME: message" on standard error).
type command struct {
	name   string
	fs     *pflag.FlagSet
	stdout io.Writer
	stderr io.Writer

	configPath *string // --config, for commands that read the configuration
	source     string  // after loadConfig: which file was read, or none
}

// newCommand starts a subcommand whose help text is help; --help (-h)
// prints it with the flags to stdout.
func newCommand(name, help string, stdout, stderr io.Writer) *command {
	c := &command{name: name, fs: pflag.NewFlagSet(name, pflag.ContinueOnError), stdout: stdout, stderr: stderr}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprint(stdout, help)
		if u := c.fs.FlagUsages(); u != "" {
			fmt.Fprintf(stdout, "\nFlags:\n%s", u)
		}
	}
	c.fs.SortFlags = false
	return c
}

// withConfig adds --config and the main flags of the configuration keys in
// sections (all of them with none): the command reads the configuration.
func (c *command) withConfig(sections ...string) *command {
	c.configPath = c.fs.String("config", "", "configuration file (default "+defaultConfigPath+", or $MAILGATE_CONFIG)")
	config.RegisterFlags(c.fs, sections...)
	return c
}

// parse parses args. When the command must stop there (help was asked for,
// or the flags are wrong) it returns false and the exit code: 0 after help,
// 2 after a usage error.
func (c *command) parse(args []string) (ok bool, code int) {
	err := c.fs.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return false, 0
	case err != nil:
		c.usageError("%v", err)
		return false, 2
	}
	return true, 0
}

// usageError reports a mistake in the command line.
func (c *command) usageError(format string, args ...any) {
	c.errorf(format, args...)
	fmt.Fprintf(c.stderr, "Run \"mailgate %s --help\" for usage.\n", c.name)
}

// errorf prints "mailgate NAME: message".
func (c *command) errorf(format string, args ...any) {
	fmt.Fprintf(c.stderr, "mailgate %s: %s\n", c.name, fmt.Sprintf(format, args...))
}

// fail is errorf returning code, for "return c.fail(1, ...)".
func (c *command) fail(code int, format string, args ...any) int {
	c.errorf(format, args...)
	return code
}

// problems prints a list of problems (an errors.Join of them) under title,
// one indented line each.
func (c *command) problems(title string, err error) {
	c.errorf("%s:", title)
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		for _, line := range strings.Split(e.Error(), "\n") {
			fmt.Fprintf(c.stderr, "  %s\n", line)
		}
	}
}

// loadConfig loads the configuration after parse: --config (or
// MAILGATE_CONFIG, or the default path, which may be absent), then env,
// then the main flags. c.source then says which file was read.
func (c *command) loadConfig() (*config.Config, error) {
	p := *c.configPath
	how := "--config"
	if p == "" {
		p, how = os.Getenv("MAILGATE_CONFIG"), "MAILGATE_CONFIG"
	}
	switch {
	case p != "":
		c.source = fmt.Sprintf("configuration file %s (from %s)", p, how)
	default:
		p = defaultConfigPath
		c.source = "configuration file " + p
		if _, err := os.Stat(p); errors.Is(err, iofs.ErrNotExist) {
			p = ""
			c.source = "no configuration file at " + defaultConfigPath + " (the default path): using the defaults, MAILGATE_* variables and flags"
		}
	}
	return config.Load(p, c.fs, os.Environ())
}

// validate is cfg.Validate with the checks config cannot make itself: every
// certificate/key pair is loaded as serve will.
func validate(cfg *config.Config) error {
	return cfg.ValidateWith(config.Checks{Pair: checkPair})
}

func checkPair(certFile, keyFile string) (certErr, keyErr error) {
	return certs.Check(certs.Pair{CertFile: certFile, KeyFile: keyFile})
}
