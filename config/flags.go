package config

import "github.com/spf13/pflag"

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
func RegisterFlags(fs *pflag.FlagSet) {
	for _, f := range flagKeys {
		fs.String(f.name, "", f.usage+" (config "+f.key+")")
	}
}
