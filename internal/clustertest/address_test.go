package clustertest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestClientAddressThroughTwoHops: a client's own address survives two
// hops. The client (127.0.0.31 for IMAP, 127.0.0.32 for SMTP) connects to
// HAProxy, which connects to a replica from 127.0.0.250 and names the
// client in a PROXY v2 header; the replica connects to Dovecot and Postfix
// from 127.0.0.1 and names the client with IMAP ID (Dovecot's login line:
// rip=) and XCLIENT (Postfix's client= line). Neither backend ever saw a
// TCP connection from the client, so the address can only have come
// through both headers. HAProxy's log shows the first hop, the replica's
// log the second.
func TestClientAddressThroughTwoHops(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	const user = "alice@example.test"
	tok := c.mint(user)

	// IMAP: the login line of Dovecot names the client.
	const imapSrc = "127.0.0.31"
	dmark, lmark := c.dc.Log.Mark(), c.lb.Log.Mark()
	ic, reply, err := imapLogin(imapSrc, c.lb.Addr(feIMAPS), c.clientTLS, user, tok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reply, "a1 OK") {
		t.Fatalf("login through HAProxy and mailgate: %q", reply)
	}
	line := c.dc.Log.WaitSince(t, dmark, "rip="+imapSrc+",", logTimeout)
	if !strings.Contains(line, c.dc.LoginLogPrefix()+user+">") {
		t.Fatalf("Dovecot's line with rip=%s is not %s's login: %q", imapSrc, user, line)
	}
	t.Logf("Dovecot: %s", line)
	if _, err := ic.imapCmd("a2", "LOGOUT"); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("LOGOUT: %v", err)
	}
	ic.Close()
	c.lb.Log.WaitSince(t, lmark, imapSrc+":", logTimeout)
	hop1 := c.lb.ConnectionLines(lmark, imapSrc)
	if len(hop1) != 1 || !strings.Contains(hop1[0], " "+feIMAPS+" "+feIMAPS+"/r") {
		t.Fatalf("HAProxy's lines for %s: %q, want one through backend %s", imapSrc, hop1, feIMAPS)
	}
	t.Logf("HAProxy: %s", hop1[0])
	server := strings.Fields(strings.SplitN(hop1[0], feIMAPS+"/", 2)[1])[0]
	mline := c.replica(server).log.WaitSince(t, 0, "remote="+imapSrc+":", logTimeout)
	t.Logf("mailgate %s: %s", server, mline)
	// mailgate passes its connection id on as Dovecot's session id.
	if _, conn, ok := strings.Cut(mline, " conn="); !ok || !strings.Contains(line, "session=<"+strings.Fields(conn)[0]+">") {
		t.Errorf("Dovecot's session is not mailgate's connection: %q vs %q", line, mline)
	}

	// SMTP: Postfix's client= line of the queued message names the client.
	const smtpSrc = "127.0.0.32"
	pmark, lmark := c.pf.Log.Mark(), c.lb.Log.Mark()
	sc, err := smtpLogin(smtpSrc, c.lb.Addr(feSMTPS), c.clientTLS, user, tok)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("hops-%d@clustertest", time.Now().UnixNano())
	reply, err = sc.smtpSend(user, "bob@example.test", message(user, "bob@example.test", id, "two hops"))
	if err != nil {
		t.Fatal(err)
	}
	sc.smtpCmd("QUIT", "221")
	sc.Close()
	qid := queueID(reply)
	if qid == "" {
		t.Fatalf("no queue id in %q", reply)
	}
	line = c.pf.Log.WaitSince(t, pmark, qid+": client=", logTimeout)
	if !strings.Contains(line, "["+smtpSrc+"]") || !strings.Contains(line, "sasl_username="+user) {
		t.Fatalf("Postfix's client= line %q, want [%s] and sasl_username=%s", line, smtpSrc, user)
	}
	t.Logf("Postfix: %s", line)
	c.dc.WaitMessage(t, "bob@example.test", id, logTimeout)
	c.lb.Log.WaitSince(t, lmark, smtpSrc+":", logTimeout)
	hop1 = c.lb.ConnectionLines(lmark, smtpSrc)
	if len(hop1) != 1 || !strings.Contains(hop1[0], " "+feSMTPS+" "+feSMTPS+"/r") {
		t.Fatalf("HAProxy's lines for %s: %q", smtpSrc, hop1)
	}
	t.Logf("HAProxy: %s", hop1[0])
	server = strings.Fields(strings.SplitN(hop1[0], feSMTPS+"/", 2)[1])[0]
	t.Logf("mailgate %s: %s", server, c.replica(server).log.WaitSince(t, 0, "remote="+smtpSrc+":", logTimeout))

}

// replica returns the replica named name (r1, r2, ...).
func (c *cluster) replica(name string) *replica {
	c.t.Helper()
	for _, r := range c.reps {
		if r.name == name {
			return r
		}
	}
	c.t.Fatalf("no replica %q", name)
	return nil
}

// queueID returns the queue id of a "250 2.0.0 Ok: queued as ID" reply.
func queueID(reply string) string {
	_, id, ok := strings.Cut(reply, "queued as ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(id)
}
