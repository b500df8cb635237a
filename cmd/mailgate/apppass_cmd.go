package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

const appPasswordsHelp = `Usage: mailgate app-passwords list   --user ADDRESS [flags]
       mailgate app-passwords revoke --user ADDRESS (--id ID | --all) [flags]
       mailgate app-passwords create --user ADDRESS --name NAME [--protocols imap,smtp] [--expires 720h] [flags]

Manages the app passwords in app_passwords.database (whether or not
app_passwords.enabled is on):

  list     the user's app passwords: id, name, protocols, created, expires,
           last use and its address (never a password or its hash)
  revoke   revokes one (--id) or all (--all) of the user's app passwords at
           once: the next login with one fails
  create   makes an app password for the user (before the self-service page
           exists) and prints it once: it is not stored, only its hash.
           --protocols defaults to every one app_passwords.protocols allows,
           --expires to app_passwords.default_expiry (0: that default)
`

// appPassOpTimeout bounds the command's work with the store.
const appPassOpTimeout = time.Minute

func runAppPasswords(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("app-passwords", appPasswordsHelp, stdout, stderr).withConfig("log")
	user := cmd.fs.String("user", "", "the mailbox address")
	id := cmd.fs.String("id", "", "revoke: the app password's id (from list)")
	all := cmd.fs.Bool("all", false, "revoke: all of the user's app passwords")
	name := cmd.fs.String("name", "", "create: the password's label, e.g. \"phone\"")
	protocols := cmd.fs.StringSlice("protocols", nil, "create: what it may be used with: imap, smtp, pop3, sieve (default: all the policy allows)")
	expires := cmd.fs.Duration("expires", 0, "create: lifetime, e.g. 720h (default: app_passwords.default_expiry)")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	if cmd.fs.NArg() != 1 {
		cmd.usageError("want one of the subcommands list, revoke, create")
		return 2
	}
	sub := cmd.fs.Arg(0)
	switch {
	case sub != "list" && sub != "revoke" && sub != "create":
		cmd.usageError("unknown subcommand %q: want list, revoke or create", sub)
		return 2
	case *user == "":
		cmd.usageError("--user is required")
		return 2
	case sub == "revoke" && (*id == "") == !*all:
		cmd.usageError("revoke wants --id ID or --all")
		return 2
	case sub == "create" && *name == "":
		cmd.usageError("create wants --name")
		return 2
	}
	var protos []apppass.Protocol
	for _, p := range *protocols {
		proto, err := apppass.ParseProtocol(strings.TrimSpace(p))
		if err != nil {
			cmd.usageError("--protocols: %v", err)
			return 2
		}
		protos = append(protos, proto)
	}
	cfg, err := cmd.loadConfig()
	if err != nil {
		return cmd.fail(2, "%v", err)
	}
	if err := cfg.Validate(); err != nil {
		cmd.problems("the configuration has problems ("+cmd.source+")", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), appPassOpTimeout)
	defer cancel()
	st, err := openAppPassStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return cmd.fail(1, "%v", err)
	}
	defer st.Close()
	switch sub {
	case "list":
		err = listAppPasswords(ctx, st, *user, stdout)
	case "revoke":
		err = revokeAppPasswords(ctx, st, *user, *id, *all, stdout)
	default:
		err = createAppPassword(ctx, st, *user, *name, protos, *expires, stdout)
	}
	if err != nil {
		code := 1
		if errors.Is(err, apppass.ErrBadUser) || errors.Is(err, apppass.ErrBadName) || errors.Is(err, apppass.ErrNotAllowed) {
			code = 2
		}
		return cmd.fail(code, "%v", err)
	}
	return 0
}

func listAppPasswords(ctx context.Context, m apppass.Manager, user string, w io.Writer) error {
	recs, err := m.List(ctx, user)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintf(w, "%s has no app passwords\n", user)
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPROTOCOLS\tCREATED\tEXPIRES\tLAST USED\tFROM")
	now := time.Now()
	for _, r := range recs {
		expires := stamp(r.Expires, "never")
		if r.Expired(now) {
			expires += " (expired)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, protocolList(r.Protocols),
			stamp(r.Created, "-"), expires, stamp(r.LastUsed, "never"), orDash(r.LastAddr))
	}
	return tw.Flush()
}

func revokeAppPasswords(ctx context.Context, m apppass.Manager, user, id string, all bool, w io.Writer) error {
	if all {
		n, err := m.RevokeAll(ctx, user)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "revoked %d app password(s) of %s\n", n, user)
		return nil
	}
	if err := m.Revoke(ctx, user, id); err != nil {
		return err
	}
	fmt.Fprintf(w, "revoked app password %s of %s\n", id, user)
	return nil
}

func createAppPassword(ctx context.Context, m apppass.Manager, user, name string, protos []apppass.Protocol, expires time.Duration, w io.Writer) error {
	pw, r, err := m.Create(ctx, user, name, protos, expires)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "app password %s (%q) for %s, protocols %s, expires %s:\n\n  %s\n\nIt is shown only this once; mailgate keeps only its hash.\n",
		r.ID, r.Name, r.User, protocolList(r.Protocols), stamp(r.Expires, "never"), pw)
	return nil
}

func protocolList(ps []apppass.Protocol) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func stamp(t time.Time, zero string) string {
	if t.IsZero() {
		return zero
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
