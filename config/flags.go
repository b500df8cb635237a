package config

import (
	"strings"

	"github.com/spf13/pflag"
)

type flagKey struct{ name, key, usage string }

// flagKeys are the flags of RegisterFlags and the keys they set.
var flagKeys = []flagKey{
	{"imap-backend", "imap.backend.address", "IMAP backend (Dovecot) host:port"},
	{"smtp-backend", "smtp.backend.address", "submission backend (Postfix) host:port"},
	{"userinfo-url", "oauth2.userinfo_url", "OIDC userinfo endpoint URL"},
	{"issuer", "oauth2.issuer", "OIDC issuer URL"},
	{"master-user", "master.user", "Dovecot master user"},
	{"master-password-file", "master.password_file", "file holding the Dovecot master password"},
	{"tls-cert", "tls.cert_file", "PEM certificate chain shown to clients"},
	{"tls-key", "tls.key_file", "PEM private key of --tls-cert"},
	{"log-level", "log.level", "debug, info, warn or error"},
	{"http-listen", "http.listen", "operations endpoint address (/metrics /healthz /readyz); empty disables"},
	{"mode", "oauth2.mode", "token validation: userinfo, introspection, jwt or auto"},
}

// RegisterFlags adds the main flags to fs: --imap-backend, --smtp-backend,
// --userinfo-url, --issuer, --master-user, --master-password-file,
// --tls-cert, --tls-key, --log-level, --http-listen and --mode. They are
// strings with no default; [Load] applies only those set on the command line,
// over everything else. --config is the command's own.
//
// With sections ("oauth2", "log", ...), only the flags of keys in those
// sections are added: a command offers the flags that matter to it.
func RegisterFlags(fs *pflag.FlagSet, sections ...string) {
	for _, f := range flagKeys {
		if len(sections) > 0 && !inSections(f.key, sections) {
			continue
		}
		fs.String(f.name, "", f.usage+" (config "+f.key+")")
	}
}

func inSections(key string, sections []string) bool {
	for _, s := range sections {
		if strings.HasPrefix(key, s+".") {
			return true
		}
	}
	return false
}
