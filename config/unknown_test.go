package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnknownKeys(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string // lines of Validate's error, in order
	}{
		{"misspelled section", "mastr:\n  user: x\n", []string{"c.yaml:1: mastr: unknown key (did you mean master?)"}},
		{"misspelled key", "oauth2:\n  usrinfo_url: x\n", []string{"c.yaml:2: oauth2.usrinfo_url: unknown key (did you mean userinfo_url?)"}},
		{"swapped letters", "imap:\n  backend:\n    adress: x\n", []string{"c.yaml:3: imap.backend.adress: unknown key (did you mean address?)"}},
		{"key in the wrong section", "userinfo_url: https://x\n", []string{"c.yaml:1: userinfo_url: unknown key (did you mean oauth2.userinfo_url?)"}},
		{"in a certificate entry", "tls:\n  certificates:\n    - cert_file: a\n      key_file: b\n    - cert: a\n",
			[]string{"c.yaml:5: tls.certificates[1].cert: unknown key (did you mean cert_file?)"}},
		{"nothing close", "zzzzzz: 1\n", []string{"c.yaml:1: zzzzzz: unknown key"}},
		{"several, in file order", "log:\n  levl: debug\nlimits:\n  max_conections: 3\n",
			[]string{"c.yaml:2: log.levl: unknown key (did you mean level?)", "c.yaml:4: limits.max_conections: unknown key (did you mean max_connections?)"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			writeAt(t, path, tt.yaml)
			c, err := Load(path, nil, nil)
			if err != nil {
				t.Fatalf("Load() = %v, want the unknown keys left to Validate", err)
			}
			var got []string
			for _, fe := range fieldErrors(c.Validate()) {
				if strings.Contains(fe.Problem, "unknown key") {
					got = append(got, strings.TrimPrefix(fe.Error(), filepath.Dir(path)+"/"))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("unknown keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestUnknownKeyKeepsTheRest(t *testing.T) {
	c, err := Parse(strings.NewReader("mastr:\n  user: x\nlog:\n  level: debug\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" {
		t.Errorf("log.level = %q: the known keys must still be read", c.Log.Level)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "line 1: mastr: unknown key (did you mean master?)") {
		t.Errorf("Validate() = %v", err)
	}
}

func TestUnknownEnvSuggestion(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"MAILGATE_MASTR_USER=x", "MAILGATE_MASTR_USER: not a configuration key, ignored (did you mean MAILGATE_MASTER_USER?)"},
		{"MAILGATE_OAUTH2_USERINFO=x", "MAILGATE_OAUTH2_USERINFO: not a configuration key, ignored (did you mean MAILGATE_OAUTH2_USERINFO_URL?)"},
		{"MAILGATE_IMAP_BACKEND_ADRESS=x", "(did you mean MAILGATE_IMAP_BACKEND_ADDRESS?)"},
		{"MAILGATE_SOMETHING_ELSE_ENTIRELY=x", "MAILGATE_SOMETHING_ELSE_ENTIRELY: not a configuration key, ignored"},
	} {
		t.Run(tt.env, func(t *testing.T) {
			c, err := Load("", nil, []string{tt.env})
			if err != nil {
				t.Fatal(err)
			}
			w := strings.Join(c.Warnings(), "\n")
			if !strings.Contains(w, tt.want) {
				t.Errorf("Warnings() = %q, want %q", w, tt.want)
			}
			if !strings.Contains(tt.want, "did you mean") && strings.Contains(w, "did you mean") {
				t.Errorf("Warnings() = %q: no suggestion expected", w)
			}
		})
	}
}

// A missing secret file is one problem among the others, not a load error,
// and does not add "master.password: required".
func TestSecretFileProblemCollected(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	c, err := Load(writeFile(t, "c.yaml", "master:\n  password_file: "+missing+"\nlog:\n  level: loud\nmastr: {}\n"), nil, nil)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	keys := map[string]int{}
	for _, fe := range fieldErrors(c.Validate()) {
		keys[fe.Key]++
	}
	for _, k := range []string{"master.password_file", "log.level", "mastr", "tls.cert_file"} {
		if keys[k] != 1 {
			t.Errorf("problems by key = %v, want one for %s", keys, k)
		}
	}
	if keys["master.password"] != 0 {
		t.Errorf("problems by key = %v: master.password repeats the file's problem", keys)
	}
}

func TestValidatePairs(t *testing.T) {
	cert := writeFile(t, "cert.pem", "c")
	key := writeFile(t, "key.pem", "k")
	bad := writeFile(t, "bad.pem", "x")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	// check stands in for certs.Check: bad.pem is broken wherever it is.
	var calls []string
	check := func(c, k string) (certErr, keyErr error) {
		calls = append(calls, filepath.Base(c)+"+"+filepath.Base(k))
		if c == bad {
			certErr = errors.New(c + " is not PEM")
		}
		if c == missing {
			certErr = errors.New("the check's own read error, not to be shown")
		}
		if k == bad {
			keyErr = errors.New(k + " is not PEM")
		}
		return certErr, keyErr
	}
	for _, tt := range []struct {
		name      string
		mutate    func(c *Config)
		want      []string // problems with a pair, in order
		wantCalls string
	}{
		{"good", func(c *Config) {}, nil, "cert.pem+key.pem"},
		{"default cert broken", func(c *Config) { c.TLS.CertFile = bad }, []string{"tls.cert_file: " + bad + " is not PEM"}, "bad.pem+key.pem"},
		{"entry key broken", func(c *Config) { c.TLS.Certificates = []CertPair{{cert, key}, {cert, bad}} },
			[]string{"tls.certificates[1].key_file: " + bad + " is not PEM"}, "cert.pem+key.pem cert.pem+key.pem cert.pem+bad.pem"},
		{"every pair reported", func(c *Config) { c.TLS.KeyFile = bad; c.TLS.Certificates = []CertPair{{bad, key}} },
			[]string{"tls.key_file: " + bad + " is not PEM", "tls.certificates[0].cert_file: " + bad + " is not PEM"}, "cert.pem+bad.pem bad.pem+key.pem"},
		{"unreadable file: reported once", func(c *Config) { c.TLS.CertFile = missing },
			[]string{"tls.cert_file: cannot read " + missing + ": no such file or directory"}, "missing.pem+key.pem"},
		{"unreadable cert, broken key: both", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = missing, bad },
			[]string{"tls.cert_file: cannot read " + missing + ": no such file or directory", "tls.key_file: " + bad + " is not PEM"}, "missing.pem+bad.pem"},
		{"both unreadable: not checked", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = missing, missing },
			[]string{"tls.cert_file: cannot read " + missing + ": no such file or directory", "tls.key_file: cannot read " + missing + ": no such file or directory"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls = nil
			c := validConfig(t)
			c.TLS.CertFile, c.TLS.KeyFile = cert, key
			tt.mutate(&c)
			var got []string
			for _, fe := range fieldErrors(c.ValidateWith(Checks{Pair: check})) {
				got = append(got, fe.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("ValidateWith() problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if g := strings.Join(calls, " "); g != tt.wantCalls {
				t.Errorf("pairs checked: %q, want %q", g, tt.wantCalls)
			}
			if err := c.Validate(); tt.mutate != nil && len(tt.want) > 0 && !strings.Contains(tt.want[0], "cannot read") && err != nil {
				t.Errorf("Validate() without checks = %v, want contents unchecked", err)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"mastr", "master", 1}, {"adress", "address", 1}, {"levle", "level", 1}, {"abc", "xyz", 3}, {"", "abc", 3}} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func writeAt(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
