// Command mailgate is a TLS-terminating IMAP and SMTP-submission front proxy
// that accepts OAuth bearer tokens (SASL XOAUTH2 and OAUTHBEARER), validates
// them with the identity provider, and logs in to Dovecot and Postfix as a
// Dovecot master user on behalf of the verified address.
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

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
  version        print the version

Every configuration key can also be set with an environment variable
MAILGATE_<SECTION>_<KEY>, e.g. MAILGATE_OAUTH2_USERINFO_URL.
Run "mailgate <command> --help" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

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
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "mailgate %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mailgate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
