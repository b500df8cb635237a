package demo

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
)

// masterSeparator joins user and master user in a plain login name
// ("user*master"), like Dovecot's auth_master_user_separator.
const masterSeparator = "*"

// masterAuth checks Dovecot-style master-user logins, the only kind of login
// the demo backends accept: the master credentials authenticate, and the
// target mailbox is the one being authorized.
type masterAuth struct {
	user, password string
	users          map[string]bool // lower-cased addresses of the demo mailboxes
}

func newMasterAuth(user, password string, users []string) masterAuth {
	m := masterAuth{user: user, password: password, users: make(map[string]bool, len(users))}
	for _, u := range users {
		m.users[strings.ToLower(u)] = true
	}
	return m
}

// login checks a SASL PLAIN triple and returns the lower-cased mailbox it
// authorizes. The target comes from the authorization identity or, when that
// is empty, from a "user*master" login name.
func (m masterAuth) login(authzid, authcid, password string) (string, bool) {
	if authzid == "" {
		i := strings.LastIndex(authcid, masterSeparator)
		if i < 0 {
			return "", false
		}
		authzid, authcid = authcid[:i], authcid[i+len(masterSeparator):]
	}
	userOK := subtle.ConstantTimeCompare([]byte(authcid), []byte(m.user)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(password), []byte(m.password)) == 1
	target := strings.ToLower(authzid)
	if !userOK || !passOK || !m.users[target] {
		return "", false
	}
	return target, true
}

// known reports whether addr is one of the demo mailboxes.
func (m masterAuth) known(addr string) bool { return m.users[strings.ToLower(addr)] }

// debugLogger adapts the Printf-style error loggers of imapserver and go-smtp
// to slog at debug level: what they report is mostly clients going away.
type debugLogger struct{ component string }

func (l debugLogger) Printf(format string, v ...any) {
	slog.Debug(fmt.Sprintf(format, v...), "component", l.component)
}

func (l debugLogger) Println(v ...any) {
	slog.Debug(strings.TrimSuffix(fmt.Sprintln(v...), "\n"), "component", l.component)
}
