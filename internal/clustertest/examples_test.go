package clustertest

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mailgate/mailgate/certs"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/internal/testenv"
)

const exampleDir = "../../examples/ha"

// haExample is what examples/ha's files say, parsed.
type haExample struct {
	haproxyAddr string            // compose: the haproxy service's address
	replicas    map[string]string // compose: mailgateN service -> address
	redis       bool              // compose has a redis service
	mailgate    *config.Config    // mailgate.yaml, its files pointed at temporary ones
}

func loadHAExample(t *testing.T) haExample {
	t.Helper()
	var compose struct {
		Services map[string]struct {
			Networks any      `yaml:"networks"` // a list of names, or a map with settings
			Secrets  []string `yaml:"secrets"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join(exampleDir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	ex := haExample{replicas: map[string]string{}}
	for name, s := range compose.Services {
		var addr string
		if nets, ok := s.Networks.(map[string]any); ok {
			if mail, ok := nets["mail"].(map[string]any); ok {
				addr, _ = mail["ipv4_address"].(string)
			}
		}
		switch {
		case name == "haproxy":
			ex.haproxyAddr = addr
		case name == "redis":
			ex.redis = true
		case strings.HasPrefix(name, "mailgate"):
			if addr == "" || !slices.Contains(s.Secrets, "redis_password") {
				t.Fatalf("compose.yaml: %s has no fixed address (%q) or no redis_password secret (%v)", name, addr, s.Secrets)
			}
			ex.replicas[name] = addr
		}
	}
	if ex.haproxyAddr == "" || len(ex.replicas) != 3 || !ex.redis {
		t.Fatalf("compose.yaml: haproxy %q, replicas %v, redis %v; want HAProxy with an address, three replicas and Redis", ex.haproxyAddr, ex.replicas, ex.redis)
	}

	// mailgate.yaml, with every file it names (certificates, secrets)
	// replaced by a temporary one, must be a configuration mailgate serves.
	b, err = os.ReadFile(filepath.Join(exampleDir, "mailgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := certs.WritePEM(dir, "mail.example.com")
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`/(etc|run)/[^\s"']+`).ReplaceAllStringFunc(string(b), func(p string) string {
		switch {
		case strings.HasSuffix(p, "privkey.pem"):
			return keyFile
		case strings.HasSuffix(p, ".pem"):
			return certFile
		}
		f := filepath.Join(dir, filepath.Base(p))
		os.WriteFile(f, []byte("secret\n"), 0o600)
		return f
	})
	if ex.mailgate, err = config.Parse(strings.NewReader(s)); err != nil {
		t.Fatalf("examples/ha/mailgate.yaml: %v", err)
	}
	if err := ex.mailgate.Validate(); err != nil {
		t.Fatalf("examples/ha/mailgate.yaml does not validate:\n%v", err)
	}
	return ex
}

// TestHAExampleConsistent: examples/ha's files fit together. mailgate.yaml
// is a valid configuration (every key real, every value accepted) that
// trusts PROXY headers from HAProxy's address in compose.yaml only, uses the
// compose Redis, drains longer than HAProxy needs to take a replica out,
// and is health-checked on its http.listen port; HAProxy balances every
// listener of mailgate.yaml over the three compose replicas with
// send-proxy-v2; the DMS-side files trust exactly the replicas' addresses
// (IMAP ID, XCLIENT).
func TestHAExampleConsistent(t *testing.T) {
	ex := loadHAExample(t)
	mg := ex.mailgate
	if !slices.Equal(mg.ProxyProtocol.TrustedNetworks, []string{ex.haproxyAddr + "/32"}) {
		t.Errorf("mailgate.yaml proxy_protocol.trusted_networks %v, want HAProxy's %s/32 only", mg.ProxyProtocol.TrustedNetworks, ex.haproxyAddr)
	}
	if host, _, _ := net.SplitHostPort(mg.Cluster.Redis.Address); host != "redis" {
		t.Errorf("mailgate.yaml cluster.redis.address %q, want the compose service redis", mg.Cluster.Redis.Address)
	}
	if mg.IMAP.Backend.ClientIP != config.ClientIPID || mg.SMTP.Backend.ClientIP != config.ClientIPXClient {
		t.Errorf("mailgate.yaml passes the client's address as imap %q, smtp %q; want id and xclient", mg.IMAP.Backend.ClientIP, mg.SMTP.Backend.ClientIP)
	}

	cfg, err := os.ReadFile(filepath.Join(exampleDir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	hc := string(cfg)
	// default-server check port P inter Ns fall F ... send-proxy-v2
	m := regexp.MustCompile(`(?m)^\s*default-server\s.*\bcheck port (\d+) inter (\d+)s fall (\d+)\b.*$`).FindStringSubmatch(hc)
	if m == nil || !strings.Contains(m[0], "send-proxy-v2") || !strings.Contains(hc, "option httpchk GET /readyz") {
		t.Fatalf("haproxy.cfg: no default-server line with check port, inter, fall and send-proxy-v2, or no httpchk of /readyz")
	}
	_, httpPort, _ := net.SplitHostPort(mg.HTTP.Listen)
	if m[1] != httpPort {
		t.Errorf("haproxy.cfg checks port %s, mailgate.yaml http.listen is %q", m[1], mg.HTTP.Listen)
	}
	inter, _ := strconv.Atoi(m[2])
	fall, _ := strconv.Atoi(m[3])
	if out := time.Duration(inter*fall) * time.Second; mg.Cluster.DrainDelay < out+2*time.Second {
		t.Errorf("mailgate.yaml cluster.drain_delay %v: HAProxy needs %v (inter x fall) to take a replica out; want at least 2 s more", mg.Cluster.DrainDelay, out)
	}
	for _, listen := range []string{mg.IMAP.ListenTLS, mg.IMAP.ListenStartTLS, mg.SMTP.ListenTLS, mg.SMTP.ListenStartTLS, mg.Sieve.Listen} {
		_, port, _ := net.SplitHostPort(listen)
		if !regexp.MustCompile(`(?m)^\s*bind :` + port + `$`).MatchString(hc) {
			t.Errorf("haproxy.cfg has no frontend on :%s (mailgate.yaml listens on %q)", port, listen)
		}
		for name := range ex.replicas {
			if !regexp.MustCompile(`(?m)^\s*server ` + name + ` ` + name + `:` + port + `$`).MatchString(hc) {
				t.Errorf("haproxy.cfg: no server %s:%s", name, port)
			}
		}
	}

	dovecot, err := os.ReadFile(filepath.Join(exampleDir, "dms-config", "dovecot.cf"))
	if err != nil {
		t.Fatal(err)
	}
	postfix, err := os.ReadFile(filepath.Join(exampleDir, "dms-config", "postfix-master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, addr := range ex.replicas {
		want = append(want, addr)
	}
	slices.Sort(want)
	trusted := settingLine(t, dovecot, "login_trusted_networks = ")
	var got []string
	for _, n := range strings.Fields(trusted) {
		got = append(got, strings.TrimSuffix(n, "/32"))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("dms-config/dovecot.cf login_trusted_networks %q, want the replicas %v", trusted, want)
	}
	for _, svc := range []string{"submission/inet/", "submissions/inet/"} {
		hosts := strings.Split(settingLine(t, postfix, svc+"smtpd_authorized_xclient_hosts="), ",")
		slices.Sort(hosts)
		if !slices.Equal(hosts, want) {
			t.Errorf("dms-config/postfix-master.cf %ssmtpd_authorized_xclient_hosts %v, want the replicas %v", svc, hosts, want)
		}
	}
}

// settingLine returns the value of the uncommented line starting with prefix.
func settingLine(t *testing.T, file []byte, prefix string) string {
	t.Helper()
	for _, l := range bytes.Split(file, []byte("\n")) {
		if s := string(l); strings.HasPrefix(s, prefix) {
			return strings.TrimSpace(strings.TrimPrefix(s, prefix))
		}
	}
	t.Fatalf("no line %q...", prefix)
	return ""
}

// TestHAExampleHAProxyConfig: HAProxy (Debian's haproxy) accepts
// examples/ha/haproxy.cfg. Its only warnings may be the replicas' names,
// which resolve in compose's network only.
func TestHAExampleHAProxyConfig(t *testing.T) {
	if _, err := testenv.HAProxyBinary(); err != nil {
		if testenv.Integration() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	warnings, err := testenv.CheckHAProxyConfig(filepath.Join(exampleDir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range warnings {
		if !regexp.MustCompile(`could not resolve address 'mailgate[123]'`).MatchString(w) {
			t.Errorf("haproxy -c: %s", w)
		}
	}
}
