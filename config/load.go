package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Size limits for what Load reads.
const (
	maxConfigBytes = 1 << 20
	maxSecretBytes = 64 << 10
)

// ErrSecretConflict is wrapped by the *[FieldError] that [Config.Validate]
// reports when a secret is given both as a value and as a *_file.
var ErrSecretConflict = errors.New("both the value and the file are set")

// envIgnored are MAILGATE_* variables that are not configuration keys but are
// read by the command (so Load does not call them unknown).
var envIgnored = map[string]bool{EnvPrefix + "CONFIG": true}

// Load builds a Config from [Default], then the YAML file at path ("" = no
// file; a path that cannot be read is an error), then env, then the flags of
// flags that were set on the command line (flags may be nil; see
// [RegisterFlags]).
//
// env is in os.Environ form ("KEY=value"). Every key has a variable:
// oauth2.userinfo_url is MAILGATE_OAUTH2_USERINFO_URL. Lists are comma
// separated; durations are Go durations ("30s", "5m"); tls.certificates and
// smtp.sender_aliases take YAML ("[{cert_file: a.pem, key_file: a.key}]").
// A variable that is set but empty sets a string or list to empty and is
// ignored for booleans, numbers and durations. docker-mailserver's
// ENABLE_OAUTH2 and OAUTH2_INTROSPECTION_URL are accepted (the latter as
// oauth2.userinfo_url with oauth2.mode userinfo unless
// MAILGATE_OAUTH2_USERINFO_URL, resp. MAILGATE_OAUTH2_MODE, is set).
//
// In the file, a key with no value (`listen_starttls:`) sets it to empty and
// a bare number is not a duration (write "30s"). Finally
// master.password_file and oauth2.client_secret_file are read (trailing
// newlines trimmed) into master.password and oauth2.client_secret.
//
// Load fails on a file it cannot read or parse and on a variable or flag
// with a bad value. Other mistakes do not stop it, so that all are reported
// together by [Config.Validate] (which Load does not call): unknown keys in
// the file (with their line and a suggestion), a *_file that cannot be read
// or is empty, a secret set both as a value and as a file. Remarks worth
// logging, such as unknown MAILGATE_* variables, are in [Config.Warnings].
func Load(path string, flags *pflag.FlagSet, env []string) (*Config, error) {
	var data []byte
	if path != "" {
		b, err := readLimited(path, maxConfigBytes)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data = b
	}
	return build(data, path, flags, env)
}

// Parse builds a Config from [Default] and the YAML in r, with no environment
// and no flags; *_file secrets are read as by [Load].
func Parse(r io.Reader) (*Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config: larger than %d bytes", maxConfigBytes)
	}
	return build(data, "", nil, nil)
}

func build(data []byte, name string, flags *pflag.FlagSet, env []string) (*Config, error) {
	c := Default()
	if len(bytes.TrimSpace(data)) > 0 {
		if err := decodeFile(data, name, &c); err != nil {
			if name != "" {
				return nil, fmt.Errorf("config: %s: %w", name, err)
			}
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	envs := environ(env)
	errs := applyEnv(&c, envs)
	errs = append(errs, applyAliases(&c, envs)...)
	errs = append(errs, applyFlags(&c, flags)...)
	secretProblems := resolveSecrets(&c)
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(append(errs, secretProblems...)...))
	}
	c.loadProblems = append(c.loadProblems, secretProblems...)
	normalize(&c)
	return &c, nil
}

// decodeFile decodes YAML data over c, which holds the defaults. Unknown
// keys do not stop it: they go to c.loadProblems, with their line in the
// file name ("" = none).
func decodeFile(data []byte, name string, c *Config) error {
	// "::" because sender_aliases keys are addresses with dots in them,
	// which viper would otherwise split into nested keys.
	v := viper.NewWithOptions(viper.KeyDelimiter("::"))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return err
	}
	opts := []viper.DecoderConfigOption{decoderOptions}
	if unknown := unknownKeys(data, name); len(unknown) > 0 {
		// Decode the rest, so that the other problems show too.
		opts = append(opts, func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = false })
		c.loadProblems = append(c.loadProblems, unknown...)
	}
	if err := v.Unmarshal(c, opts...); err != nil {
		return err
	}
	// viper drops keys whose value is null; treat them as "set to empty"
	// (so `listen_starttls:` disables the listener instead of keeping :143).
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return err
	}
	for _, key := range nullKeys(raw, "") {
		if l, ok := leafByKey(key); ok {
			l.field(c).SetZero()
		}
	}
	return nil
}

func decoderOptions(dc *mapstructure.DecoderConfig) {
	dc.ErrorUnused = true
	dc.WeaklyTypedInput = true
	dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
		numberToDurationHook,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
}

var durationType = reflect.TypeFor[time.Duration]()

// numberToDurationHook refuses `timeout: 5` (5ns under weak typing); only 0
// may be written without a unit.
func numberToDurationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return data, nil
		}
		return nil, fmt.Errorf("duration %v has no unit: write e.g. \"%vs\"", data, data)
	}
	return data, nil
}

// nullKeys lists the dotted (lower-cased) paths of raw whose value is null.
func nullKeys(raw map[string]any, prefix string) []string {
	var out []string
	for k, v := range raw {
		key := prefix + strings.ToLower(k)
		switch v := v.(type) {
		case nil:
			out = append(out, key)
		case map[string]any:
			out = append(out, nullKeys(v, key+".")...)
		}
	}
	return out
}

// environ turns os.Environ-style entries into a map; a later entry wins.
func environ(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" {
			m[k] = v
		}
	}
	return m
}

func applyEnv(c *Config, envs map[string]string) []error {
	var errs []error
	known := make(map[string]bool)
	for _, l := range leaves() {
		name := l.env()
		known[name] = true
		v, ok := envs[name]
		if !ok {
			continue
		}
		if err := setString(c, l, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	var unknown []string
	for k := range envs {
		if strings.HasPrefix(k, EnvPrefix) && !known[k] && !envIgnored[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		note := k + ": not a configuration key, ignored"
		if s := suggestEnv(k); s != "" {
			note += " (did you mean " + s + "?)"
		}
		c.notes = append(c.notes, note)
	}
	return errs
}

// docker-mailserver variable names accepted as aliases.
const (
	envDMSEnable        = "ENABLE_OAUTH2"
	envDMSIntrospection = "OAUTH2_INTROSPECTION_URL"
)

func applyAliases(c *Config, envs map[string]string) []error {
	var errs []error
	if v := strings.TrimSpace(envs[envDMSEnable]); v != "" {
		on, err := strconv.ParseBool(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: want 1 or 0, got %q", envDMSEnable, v))
		case !on:
			c.notes = append(c.notes, envDMSEnable+"=0 (docker-mailserver) is ignored: mailgate always authenticates with OAuth2")
		}
	}
	if u := envs[envDMSIntrospection]; u != "" {
		if _, set := envs[envName("oauth2.userinfo_url")]; set {
			c.notes = append(c.notes, envDMSIntrospection+" ignored: "+envName("oauth2.userinfo_url")+" is set")
		} else {
			c.OAuth2.UserinfoURL = u
			note := envDMSIntrospection + " (docker-mailserver) used as oauth2.userinfo_url"
			if _, set := envs[envName("oauth2.mode")]; !set {
				c.OAuth2.Mode = ModeUserinfo
				note += " with oauth2.mode userinfo"
			}
			c.notes = append(c.notes, note)
		}
	}
	return errs
}

func applyFlags(c *Config, fs *pflag.FlagSet) []error {
	if fs == nil {
		return nil
	}
	var errs []error
	for _, fk := range flagKeys {
		f := fs.Lookup(fk.name)
		if f == nil || !f.Changed {
			continue
		}
		l, _ := leafByKey(fk.key)
		if err := setString(c, l, f.Value.String()); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", fk.name, err))
		}
	}
	return errs
}

// setString sets the key l of c from its textual form s (an environment
// variable or a flag). The error never contains s for string keys, which may
// be secrets.
func setString(c *Config, l leaf, s string) error {
	f := l.field(c)
	switch {
	case l.typ == durationType:
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 5m, got %q", s)
		}
		f.SetInt(int64(d))
	case l.typ.Kind() == reflect.String:
		f.SetString(s)
	case l.typ.Kind() == reflect.Bool:
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		f.SetBool(b)
	case l.typ.Kind() == reflect.Int || l.typ.Kind() == reflect.Int64:
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		f.SetInt(n)
	case l.typ.Kind() == reflect.Float64:
		if s = strings.TrimSpace(s); s == "" {
			return nil
		}
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, got %q", s)
		}
		f.SetFloat(n)
	case l.typ == reflect.TypeFor[[]string]():
		f.Set(reflect.ValueOf(splitList(s)))
	default:
		// Maps and lists of sections: YAML, decoded like the file.
		var raw any
		if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
			return fmt.Errorf("want YAML: %w", err)
		}
		out := reflect.New(l.typ)
		dc := &mapstructure.DecoderConfig{Result: out.Interface()}
		decoderOptions(dc)
		d, err := mapstructure.NewDecoder(dc)
		if err != nil {
			return err
		}
		if err := d.Decode(raw); err != nil {
			return fmt.Errorf("want YAML for %s: %w", l.key, err)
		}
		f.Set(out.Elem())
	}
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items; "" is an empty list.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// resolveSecrets reads the *_file secrets into their keys. Its problems are
// *FieldError of the *_file key.
func resolveSecrets(c *Config) []error {
	var errs []error
	for _, s := range []struct {
		key, fileKey string
		val          *string
		file         string
	}{
		{"master.password", "master.password_file", &c.Master.Password, c.Master.PasswordFile},
		{"oauth2.client_secret", "oauth2.client_secret_file", &c.OAuth2.ClientSecret, c.OAuth2.ClientSecretFile},
		{"cluster.redis.password", "cluster.redis.password_file", &c.Cluster.Redis.Password, c.Cluster.Redis.PasswordFile},
		{"app_passwords.oidc_client_secret", "app_passwords.oidc_client_secret_file", &c.AppPasswords.OIDCClientSecret, c.AppPasswords.OIDCClientSecretFile},
	} {
		if s.file == "" {
			continue
		}
		if *s.val != "" {
			errs = append(errs, &FieldError{Key: s.fileKey, Problem: fmt.Sprintf("%s is set too: %v; keep only the file", s.key, ErrSecretConflict), Err: ErrSecretConflict})
			continue
		}
		b, err := readLimited(s.file, maxSecretBytes)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = fmt.Errorf("cannot read %s: %w", s.file, pe.Err)
			}
			errs = append(errs, &FieldError{Key: s.fileKey, Problem: err.Error(), Err: err})
			continue
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			errs = append(errs, &FieldError{Key: s.fileKey, Problem: s.file + " is empty"})
			continue
		}
		*s.val = v
	}
	return errs
}

// normalize lower-cases the sender_aliases keys (viper already does so for
// the file; the environment must agree).
func normalize(c *Config) {
	if len(c.SMTP.SenderAliases) == 0 {
		return
	}
	m := make(map[string][]string, len(c.SMTP.SenderAliases))
	for k, v := range c.SMTP.SenderAliases {
		k = strings.ToLower(k)
		m[k] = append(m[k], v...)
	}
	c.SMTP.SenderAliases = m
}

// readLimited reads at most limit bytes of the file at path and closes it.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
