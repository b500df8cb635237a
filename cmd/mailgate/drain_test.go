package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// TestServeDrainDelay: on SIGTERM /readyz turns 503 first while the
// listeners still accept and log in (a balancer's health check notices
// before connections are refused); they close only after
// cluster.drain_delay, and the process exits 0.
func TestServeDrainDelay(t *testing.T) {
	r := newServeRig(t)
	r.drainDelay = 3 * time.Second
	r.writeConfig("")
	r.start()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitHTTP(t, "http://"+r.httpAddr+"/readyz", http.StatusServiceUnavailable)
	draining := time.Now()
	c, err := imapclient.DialTLS(r.imaps, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatalf("listener closed as /readyz turned 503: %v\n%s", err, r.logs.String())
	}
	if err := c.Authenticate(xoauth2{r.d.User, r.d.Token}); err != nil {
		t.Fatalf("login while draining: %v", err)
	}
	c.Close()
	for {
		conn, err := net.DialTimeout("tcp", r.imaps, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Since(draining) > 20*time.Second {
			t.Fatal("listener still open 20 s after SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, r.logs.String())
	}
	logs := r.logs.String()
	if d, s := strings.Index(logs, "draining"), strings.Index(logs, "shutting down"); d < 0 || s < d {
		t.Errorf("want the draining line before shutting down:\n%s", logs)
	}
}
