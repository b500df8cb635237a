package testenv_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// redisTimeout bounds each conversation with redis-server in these tests.
const redisTimeout = 5 * time.Second

// TestRedisStopStart: the server answers, is gone after Stop, and comes
// back empty on the same address after Start.
func TestRedisStopStart(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") {
		t.Fatalf("Addr %q is not on 127.0.0.1", r.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*redisTimeout)
	defer cancel()
	if got := redisCommand(t, r.Addr, nil, "SET", "k", "v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", r.Addr, redisTimeout); err == nil {
		c.Close()
		t.Fatal("the server still accepts connections after Stop")
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	addr := r.Addr
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Addr != addr {
		t.Errorf("address changed from %s to %s", addr, r.Addr)
	}
	if got := redisCommand(t, r.Addr, nil, "EXISTS", "k"); got != ":0" {
		t.Errorf("EXISTS after restart: %q, want :0 (nothing kept)", got)
	}
	if err := r.Start(ctx); err == nil {
		t.Error("Start of a running server succeeded")
	}
}

// TestRedisAuthTLS: with TLS and an ACL user, a client must speak TLS,
// trust the CA file and authenticate.
func TestRedisAuthTLS(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{Username: "mailgate", Password: "s3cret-pw", TLS: true,
		ACL: "~mailgate:* resetchannels -@all +ping +auth +hello +get"})
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := redisCommand(t, r.Addr, r.ClientTLS(), "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("PING without AUTH: %q", got)
	}
	if got := redisCommand(t, r.Addr, r.ClientTLS(), "AUTH", "mailgate", "wrong"); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Errorf("AUTH with a wrong password: %q", got)
	}
	c, err := net.DialTimeout("tcp", r.Addr, redisTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(redisTimeout))
	c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
	if line, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-NOAUTH") {
		t.Errorf("plaintext on the TLS port got a reply: %q", line)
	}
}

// TestRedisPassword: requirepass without a user name.
func TestRedisPassword(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{Password: "pw"})
	if got := redisCommand(t, r.Addr, nil, "GET", "x"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("GET without AUTH: %q", got)
	}
	if _, err := testenv.NewRedis(context.Background(), testenv.RedisOptions{Password: "a b"}); err == nil {
		t.Error("a password with a space was accepted")
	}
}

// redisCommand sends one command on a new connection and returns the
// first reply line.
func redisCommand(t *testing.T, addr string, conf *tls.Config, args ...string) string {
	t.Helper()
	d := &net.Dialer{Timeout: redisTimeout}
	var c net.Conn
	var err error
	if conf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, conf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(redisTimeout))
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(line, "\r\n")
}
