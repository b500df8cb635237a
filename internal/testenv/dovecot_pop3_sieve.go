package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
)

// POP3 and ManageSieve as docker-mailserver enables them (ENABLE_POP3=1,
// ENABLE_MANAGESIEVE=1), plus the Sieve plugin DMS always runs in LMTP. Both
// login services share IMAP's rules: the master passdb, login_trusted_networks
// (XCLIENT ADDR=/PORT=/SESSION= is accepted from there, see doc.go) and,
// per generation, plaintext auth from trusted networks (2.3) or only after
// TLS (2.4, ssl = required). A user's scripts live in the Maildir's parent,
// the mail home: ~/sieve/<name>.sieve, the active one linked from
// ~/.dovecot.sieve. Mail filed into a new mailbox creates it
// (lda_mailbox_autocreate, as DMS sets it).

// pop3SievePorts is how many ports setPOP3SieveAddrs takes.
const pop3SievePorts = 5

// pop3SieveConf23 is the "pop3sieve" part of dovecotConf (Dovecot 2.3 and
// Pigeonhole 0.5). DMS v15's 90-sieve.conf says the same in the legacy form
// sieve = ~/.dovecot.sieve + sieve_dir = ~/sieve.
const pop3SieveConf23 = `service pop3-login {
  inet_listener pop3 {
    port = {{.POP3Port}}
  }
  inet_listener pop3s {
    port = {{.POP3TLSPort}}
    ssl = yes
  }
  inet_listener pop3_haproxy {
    port = {{.POP3HAProxyPort}}
    haproxy = yes
  }
}
service managesieve-login {
  inet_listener sieve {
    port = {{.SievePort}}
  }
  inet_listener sieve_haproxy {
    port = {{.SieveHAProxyPort}}
    haproxy = yes
  }
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes`

// pop3SieveConf24 is the "pop3sieve" part of dovecotConf24 (Dovecot and
// Pigeonhole 2.4); Debian 13's 90-sieve.conf has this sieve_script commented
// out as its example.
const pop3SieveConf24 = `service pop3-login {
  inet_listener pop3 {
    port = {{.POP3Port}}
  }
  inet_listener pop3s {
    port = {{.POP3TLSPort}}
    ssl = yes
  }
  inet_listener pop3_haproxy {
    port = {{.POP3HAProxyPort}}
    haproxy = yes
  }
}
service managesieve-login {
  inet_listener sieve {
    port = {{.SievePort}}
  }
  inet_listener sieve_haproxy {
    port = {{.SieveHAProxyPort}}
    haproxy = yes
  }
}
sieve_script personal {
  driver = file
  path = ~/sieve
  active_path = ~/.dovecot.sieve
}
lda_mailbox_autocreate = yes
lda_mailbox_autosubscribe = yes`

func init() {
	template.Must(dovecotConf.New("pop3sieve").Parse(pop3SieveConf23))
	template.Must(dovecotConf24.New("pop3sieve").Parse(pop3SieveConf24))
}

// setPOP3SieveAddrs sets the POP3 and ManageSieve addresses from
// pop3SievePorts ports and returns the template data for "pop3sieve".
func (d *Dovecot) setPOP3SieveAddrs(ports []int) map[string]any {
	l := d.gen.listen
	d.POP3Addr, d.POP3TLSAddr, d.POP3HAProxyAddr = hostPort(l, ports[0]), hostPort(l, ports[1]), hostPort(l, ports[2])
	d.SieveAddr, d.SieveHAProxyAddr = hostPort(l, ports[3]), hostPort(l, ports[4])
	return map[string]any{
		"POP3Port":         ports[0],
		"POP3TLSPort":      ports[1],
		"POP3HAProxyPort":  ports[2],
		"SievePort":        ports[3],
		"SieveHAProxyPort": ports[4],
	}
}

// MailboxDir returns the Maildir++ directory of user's mailbox: the Maildir
// itself for "INBOX", else Maildir/.<mailbox> (a host path).
func (d *Dovecot) MailboxDir(user, mailbox string) string {
	if strings.EqualFold(mailbox, "INBOX") {
		return d.MaildirFor(user)
	}
	return filepath.Join(d.MaildirFor(user), "."+mailbox)
}

// SieveDir returns where ManageSieve stores user's scripts (~/sieve in the
// mail home, a host path); the active script is linked from
// ~/.dovecot.sieve next to it.
func (d *Dovecot) SieveDir(user string) string {
	local, domain, _ := strings.Cut(user, "@")
	return filepath.Join(d.Dir, "mail", domain, local, "sieve")
}

// expectSieveGreeting connects (sending preamble first, a PROXY header, if
// not empty) and reads ManageSieve's capability greeting up to its OK.
func expectSieveGreeting(ctx context.Context, addr, preamble string) error {
	c, err := dialLine(ctx, addr, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if preamble != "" {
		if _, err := c.Write([]byte(preamble)); err != nil {
			return err
		}
	}
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(line, "OK"):
			return nil
		case strings.HasPrefix(line, "NO") || strings.HasPrefix(line, "BYE"):
			return fmt.Errorf("%s greeted %q", addr, line)
		}
	}
}
