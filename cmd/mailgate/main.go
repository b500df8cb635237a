// Command mailgate is a TLS-terminating IMAP and SMTP-submission front proxy
// that accepts OAuth bearer tokens (SASL XOAUTH2 and OAUTHBEARER), validates
// them with the identity provider, and logs in to Dovecot and Postfix as a
// Dovecot master user on behalf of the verified address.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, versionString falls back to Go's build information.
var version = "dev"

// versionString is the version to print and log.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return versionFrom(version, bi, ok)
}

// versionFrom is the stamped version if there is one, else the module
// version of a "go install ...@vX" build, else "dev" with the commit, its
// time and whether the tree was modified, as recorded by the go command.
func versionFrom(stamped string, bi *debug.BuildInfo, ok bool) string {
	if stamped != "" && stamped != "dev" {
		return stamped
	}
	if !ok || bi == nil {
		return "dev"
	}
	v := "dev"
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	var details []string
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if r := settings["vcs.revision"]; r != "" && !strings.Contains(v, r[:min(12, len(r))]) {
		details = append(details, "commit "+r[:min(12, len(r))])
	}
	if t := settings["vcs.time"]; t != "" && v == "dev" {
		details = append(details, t)
	}
	if settings["vcs.modified"] == "true" && v == "dev" {
		details = append(details, "modified")
	}
	if bi.GoVersion != "" {
		details = append(details, bi.GoVersion)
	}
	if len(details) > 0 {
		v += " (" + strings.Join(details, ", ") + ")"
	}
	return v
}

const versionHelp = `Usage: mailgate version

Prints mailgate's version: the one stamped at build time (scripts/build.sh),
else what Go recorded in the binary (module version, or commit and time).
`

func runVersion(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("version", versionHelp, stdout, stderr)
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	if cmd.fs.NArg() > 0 {
		cmd.usageError("unexpected argument %q", cmd.fs.Arg(0))
		return 2
	}
	fmt.Fprintf(stdout, "mailgate %s\n", versionString())
	return 0
}

const usage = `mailgate: OAuth (XOAUTH2 / OAUTHBEARER) front proxy for IMAP and SMTP submission.

Usage:
  mailgate <command> [flags]

Commands:
  serve          run the proxy (reads --config, default /etc/mailgate/mailgate.yaml)
  demo           run a self-contained demo: in-process mail backends, a small
                 OpenID issuer, a throwaway certificate, and mailgate in front
  check-config   load and validate the configuration, print it with secrets
                 redacted; exit 1 if it has problems
  token          validate a bearer token as "serve" would and explain the
                 result: the mailbox it maps to, the claims used, or exactly
                 why it is refused (expired, wrong audience, unverified email...)
  healthcheck    ask a running mailgate's /healthz (for Docker HEALTHCHECK)
  thunderbird-addon
                 build a Thunderbird add-on (and enterprise policy) that makes
                 Thunderbird log in to mailgate with OAuth at your provider
  onboarding dns print the DNS records that let mail apps find the settings
  app-passwords  list, revoke or create a user's app passwords
                 (list|revoke|create --user ADDRESS)
  version        print the version
  help COMMAND   the help of a command (same as "mailgate COMMAND --help")

Every configuration key can also be set with an environment variable
MAILGATE_<SECTION>_<KEY>, e.g. MAILGATE_OAUTH2_USERINFO_URL.
Run "mailgate <command> --help" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands are the subcommands run dispatches.
var commands = map[string]bool{"serve": true, "demo": true, "check-config": true, "token": true, "healthcheck": true, "version": true,
	"thunderbird-addon": true, "onboarding": true, "app-passwords": true}

// run executes one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(rest, stdout, stderr)
	case "demo":
		return runDemo(rest, stdout, stderr)
	case "check-config":
		return runCheckConfig(rest, stdout, stderr)
	case "token":
		return runToken(rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(rest, stdout, stderr)
	case "thunderbird-addon":
		return runThunderbirdAddon(rest, stdout, stderr)
	case "onboarding":
		return runOnboarding(rest, stdout, stderr)
	case "app-passwords":
		return runAppPasswords(rest, stdout, stderr)
	case "version":
		return runVersion(rest, stdout, stderr)
	case "--version", "-v":
		return runVersion(nil, stdout, stderr)
	case "help", "--help", "-h":
		if len(rest) > 0 && commands[rest[0]] {
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mailgate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
