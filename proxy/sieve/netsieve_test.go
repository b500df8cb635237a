package sieve

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
	"github.com/mailgate/mailgate/proxy"
)

// netSieveScript logs in through PHP's Net_Sieve (PEAR, as Roundcube's
// managesieve plugin uses it) with XOAUTH2 over STARTTLS and prints what
// happened as JSON. Net_Sieve sends "user=U\x01auth=P\x01\x01" with the
// password as is, so the password is "Bearer <token>", as Roundcube's
// OAuth login passes it; it cannot answer an error challenge.
const netSieveScript = `<?php
require_once 'Net/Sieve.php';
$ctx = ['ssl' => ['cafile' => getenv('SIEVE_CA'), 'peer_name' => 'localhost', 'verify_peer' => true]];
$s = new Net_Sieve();
$out = [];
$res = $s->connect('127.0.0.1', (int)getenv('SIEVE_PORT'), $ctx, true);
if (is_a($res, 'PEAR_Error')) {
	$out['connect'] = $res->getMessage();
} else {
	$start = microtime(true);
	$res = $s->login(getenv('SIEVE_USER'), 'Bearer ' . getenv('SIEVE_TOKEN'), 'XOAUTH2');
	$out['login_seconds'] = microtime(true) - $start;
	$out['login'] = is_a($res, 'PEAR_Error') ? $res->getMessage() : 'ok';
	if ($out['login'] === 'ok') {
		$name = 'php-' . getenv('SIEVE_ID');
		$r = $s->installScript($name, "keep;\r\n", false);
		$out['install'] = is_a($r, 'PEAR_Error') ? $r->getMessage() : 'ok';
		$r = $s->listScripts();
		$out['scripts'] = is_a($r, 'PEAR_Error') ? [$r->getMessage()] : $r;
		$r = $s->getScript($name);
		$out['script'] = is_a($r, 'PEAR_Error') ? $r->getMessage() : $r;
		$s->disconnect();
	}
}
echo json_encode($out);
`

type netSieveResult struct {
	Connect      string   `json:"connect"`
	Login        string   `json:"login"`
	LoginSeconds float64  `json:"login_seconds"`
	Install      string   `json:"install"`
	Scripts      []string `json:"scripts"`
	Script       string   `json:"script"`
}

// runNetSieve runs netSieveScript against si's front as user with token.
func runNetSieve(t *testing.T, si *sieveIntegration, user, token, id string) netSieveResult {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		if testenv.Integration() {
			t.Fatal("php not installed (php-cli, php-net-sieve)")
		}
		t.Skip("php not installed")
	}
	dir := t.TempDir()
	script, ca := filepath.Join(dir, "login.php"), filepath.Join(dir, "proxy.pem")
	if err := os.WriteFile(script, []byte(netSieveScript), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, si.tf.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, php, script)
	_, port, _ := strings.Cut(si.tf.addr, ":")
	cmd.Env = append(os.Environ(), "SIEVE_PORT="+port, "SIEVE_CA="+ca, "SIEVE_USER="+user, "SIEVE_TOKEN="+token, "SIEVE_ID="+id)
	out, err := cmd.Output()
	var res netSieveResult
	if err != nil || json.Unmarshal(out, &res) != nil {
		t.Fatalf("php: %v\n%s", err, out)
	}
	return res
}

// TestIntegrationSieveNetSieve: Roundcube's ManageSieve library logs in
// with a good token and manages scripts; with a refused token its login
// fails within seconds (mailgate stops waiting for the dummy reply).
func TestIntegrationSieveNetSieve(t *testing.T) {
	for name, backend := range map[string]func(*testenv.Dovecot) proxy.Backend{
		"starttls+xclient": starttlsXCLIENT, "proxy+none": proxyNoTLS,
	} {
		t.Run(name, func(t *testing.T) {
			si := newSieveIntegration(t, backend, proxy.Options{})
			id := fmt.Sprint(time.Now().UnixNano())
			token := si.mint(t, "alice@example.test", testenv.TokenOptions{})
			res := runNetSieve(t, si, "alice@example.test", token, id)
			if res.Connect != "" || res.Login != "ok" || res.Install != "ok" || strings.TrimRight(res.Script, "\r\n") != "keep;" ||
				!strings.Contains(strings.Join(res.Scripts, " "), "php-"+id) {
				t.Fatalf("Net_Sieve with a good token: %#v", res)
			}

			res = runNetSieve(t, si, "alice@example.test", "not-a-token", id)
			if res.Connect != "" || !strings.Contains(res.Login, "Authentication failed") {
				t.Fatalf("Net_Sieve with a bad token: %+v", res)
			}
			if res.LoginSeconds > 8 {
				t.Errorf("the refusal took %.1f s", res.LoginSeconds)
			}
		})
	}
}
