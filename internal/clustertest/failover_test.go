package clustertest

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	alice = "alice@example.test"
	bob   = "bob@example.test"
)

// outcome is what a client saw of one message it tried to store.
type outcome int

const (
	// stored: the server acknowledged it (SMTP 250 after the data, IMAP
	// APPEND OK). It must be in the Maildir exactly once.
	stored outcome = iota
	// notSent: the client failed before the message was complete (SMTP:
	// before the final dot). It must not be in the Maildir.
	notSent
	// unknown: the whole message was sent and the connection broke before
	// the reply. The server may or may not have it (RFC 1047: a reply lost
	// with the connection); it must be there at most once.
	unknown
)

// load is a set of client workers and what they saw.
type load struct {
	t      *testing.T
	c      *cluster
	run    string // Message-ID prefix of this load
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	msgs   map[string]outcome // by Message-ID
	events []event
	okAt   map[string][]time.Time // successful operations, by worker
	token  string                 // alice's, for every worker
	srcs   map[string]string      // client address, by worker
}

// opInterval paces each worker's operations: sustained, steady load that
// Postfix delivers as fast as it comes, so that the Maildir count at the end
// does not wait for a backlog. SMTP workers go at half this pace and
// alternate recipients: Dovecot 2.4 defers LMTP deliveries beyond 10 at once
// for one user (lmtp_user_concurrency_limit), and Postfix retries those only
// minutes later.
const opInterval = 100 * time.Millisecond

// pace waits until next, then returns the time of the next operation, every
// apart later.
func pace(next time.Time, every time.Duration) time.Time {
	time.Sleep(time.Until(next))
	return time.Now().Add(every)
}

// event is a failure a worker saw.
type event struct {
	at     time.Time
	worker string
	what   string
}

func newLoad(t *testing.T, c *cluster) *load {
	return &load{t: t, c: c, run: fmt.Sprintf("cl%d", time.Now().UnixNano()), msgs: map[string]outcome{}, okAt: map[string][]time.Time{},
		token: c.mint(alice), srcs: map[string]string{}}
}

func (l *load) record(worker, id string, o outcome, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if id != "" {
		l.msgs[id] = o
	}
	if err != nil {
		l.events = append(l.events, event{time.Now(), worker, err.Error()})
	} else {
		l.okAt[worker] = append(l.okAt[worker], time.Now())
	}
}

// okSince is how many operations of worker succeeded after t0.
func (l *load) okSince(worker string, t0 time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.okAt[worker] {
		if at.After(t0) {
			n++
		}
	}
	return n
}

// failures returns the failures seen, in order.
func (l *load) failures() []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// imapWorker keeps an IMAP session open through HAProxy from src and
// APPENDs small messages to alice's INBOX; when the session breaks, it logs
// in again through HAProxy.
func (l *load) imapWorker(name, src string) {
	defer l.wg.Done()
	next := time.Now()
	for n := 0; !l.stop.Load(); {
		c, reply, err := imapLogin(src, l.c.lb.Addr(feIMAPS), l.c.clientTLS, alice, l.token)
		if err == nil && !strings.HasPrefix(reply, "a1 OK") {
			c.Close()
			err = fmt.Errorf("login refused: %s", reply)
		}
		if err != nil {
			l.record(name, "", 0, fmt.Errorf("login: %w", err))
			continue
		}
		l.record(name, "", 0, nil)
		if _, err := c.imapCmd("a2", "SELECT INBOX"); err != nil {
			l.record(name, "", 0, err)
			c.Close()
			continue
		}
		for !l.stop.Load() {
			next = pace(next, opInterval)
			n++
			id := fmt.Sprintf("%s-%s-%d@clustertest", l.run, name, n)
			msg := message(alice, alice, id, "append under load")
			tag := fmt.Sprintf("b%d", n)
			if err := c.send(fmt.Sprintf("%s APPEND INBOX {%d+}\r\n%s", tag, len(msg), msg)); err != nil {
				l.record(name, id, unknown, fmt.Errorf("APPEND: %w", err))
				break
			}
			r, err := c.imapTagged(tag)
			switch {
			case err != nil:
				l.record(name, id, unknown, fmt.Errorf("APPEND: %w", err))
			case !strings.HasPrefix(r, tag+" OK"):
				l.record(name, id, notSent, fmt.Errorf("APPEND refused: %s", r))
			default:
				l.record(name, id, stored, nil)
			}
			if err != nil {
				break
			}
			if _, err := c.imapCmd(fmt.Sprintf("c%d", n), "NOOP"); err != nil {
				l.record(name, "", 0, err)
				break
			}
		}
		if l.stop.Load() {
			c.imapCmd("z", "LOGOUT")
		}
		c.Close()
	}
}

// smtpWorker keeps a submission session open through HAProxy from src and
// sends small messages to bob and alice in turn; when the session breaks, it
// logs in again.
func (l *load) smtpWorker(name, src string) {
	defer l.wg.Done()
	next := time.Now()
	for n := 0; !l.stop.Load(); {
		c, err := smtpLogin(src, l.c.lb.Addr(feSMTPS), l.c.clientTLS, alice, l.token)
		if err != nil {
			l.record(name, "", 0, fmt.Errorf("login: %w", err))
			continue
		}
		l.record(name, "", 0, nil)
		for !l.stop.Load() {
			next = pace(next, 2*opInterval)
			n++
			id := fmt.Sprintf("%s-%s-%d@clustertest", l.run, name, n)
			rcpt := []string{alice, bob}[n%2]
			_, err := c.smtpSend(alice, rcpt, message(alice, rcpt, id, "submission under load"))
			switch {
			case errors.Is(err, errBeforeDot):
				l.record(name, id, notSent, err)
			case err != nil && !isIOError(err):
				l.record(name, id, notSent, err) // a reply: refused
			case err != nil:
				l.record(name, id, unknown, err)
			default:
				l.record(name, id, stored, nil)
			}
			if err != nil {
				break
			}
		}
		if l.stop.Load() {
			c.smtpCmd("QUIT", "221")
		}
		c.Close()
	}
}

// isIOError reports whether err is a broken connection rather than a reply.
func isIOError(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &ne) || strings.Contains(err.Error(), "use of closed") || strings.Contains(err.Error(), "connection reset")
}

// checkMaildirs waits until Postfix has delivered everything, then checks
// every message of this load against what its client saw.
func (l *load) checkMaildirs() (stats map[outcome]int, deliveredUnknown int) {
	t := l.t
	t.Helper()
	l.mu.Lock()
	msgs := maps.Clone(l.msgs)
	l.mu.Unlock()
	pf, dc := l.c.pf, l.c.dc
	// Postfix's queue drains into Dovecot over LMTP.
	waitFor(t, 2*logTimeout, func() bool { return len(postfixQueued(pf)) == 0 }, func() string {
		q := postfixQueued(pf)
		var lines []string
		for _, f := range q[:min(len(q), 5)] {
			lines = append(lines, f)
			if l, ok := pf.Log.Line(0, filepath.Base(f)+":"); ok {
				lines = append(lines, "  first log line: "+l)
			}
		}
		return fmt.Sprintf("Postfix still holds %d messages:\n%s\n%s", len(q), strings.Join(lines, "\n"), pf.Log.TailBlock(20))
	})
	counts := maildirMessageIDs(t, dc, alice, l.run)
	maps.Copy(counts, maildirMessageIDs(t, dc, bob, l.run))
	stats = map[outcome]int{}
	for id, o := range msgs {
		stats[o]++
		n := counts[id]
		switch {
		case o == stored && n != 1:
			t.Errorf("message %s: acknowledged to its client, found %d times in the Maildir (want exactly 1)", id, n)
		case o == notSent && n != 0:
			t.Errorf("message %s: its client saw a failure before sending it whole, found %d times in the Maildir (want 0)", id, n)
		case o == unknown && n > 1:
			t.Errorf("message %s: found %d times in the Maildir (duplicated)", id, n)
		case o == unknown && n == 1:
			deliveredUnknown++
			t.Logf("message %s: its client lost the connection after sending it whole and saw a failure; it was stored (the reply went down with the replica)", id)
		}
	}
	for id, n := range counts {
		if _, ok := msgs[id]; !ok {
			t.Errorf("message %s (%d copies) is in the Maildir but no client sent it", id, n)
		}
	}
	return stats, deliveredUnknown
}

// TestReplicaKilledUnderLoad: one of three replicas is SIGKILLed while IMAP
// clients (APPEND + NOOP in long sessions) and SMTP clients (a message
// after another in long sessions) run through HAProxy. The clients whose
// sessions it held see their connection break and log in again through
// HAProxy, which sends them to the other replicas (a connection refused by
// the dead one before its health check fails is redispatched): no login
// fails. Every message a client had acknowledged is in the Maildir once
// (counted by Message-ID); every one whose client failed before sending it
// whole is absent; none is duplicated.
func TestReplicaKilledUnderLoad(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	l := newLoad(t, c)
	var workers []string
	for i := range 6 {
		name := fmt.Sprintf("imap%d", i)
		workers = append(workers, name)
		l.srcs[name] = fmt.Sprintf("127.0.1.%d", 10+i)
	}
	for i := range 4 {
		name := fmt.Sprintf("smtp%d", i)
		workers = append(workers, name)
		l.srcs[name] = fmt.Sprintf("127.0.2.%d", 10+i)
	}
	for _, w := range workers {
		l.wg.Add(1)
		if strings.HasPrefix(w, "imap") {
			go l.imapWorker(w, l.srcs[w])
		} else {
			go l.smtpWorker(w, l.srcs[w])
		}
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			l.stop.Store(true)
			l.wg.Wait()
		}
	}
	defer stopLoad()

	// Every worker is logged in and has worked for a while (about a
	// second) before the kill.
	start := time.Now()
	waitFor(t, readyTimeout, func() bool {
		for _, w := range workers {
			if l.okSince(w, start) < 6 {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("the workers did not get going; failures: %v", l.failures()) })
	if f := l.failures(); len(f) > 0 {
		t.Fatalf("failures before the kill: %v", f)
	}

	victim := c.reps[1]
	killedAt := time.Now()
	victim.signal(syscall.SIGKILL)
	victim.waitExit(10 * time.Second)
	t.Logf("killed replica %s", victim.name)

	// Every worker works again (through the other replicas), for about
	// two seconds.
	waitFor(t, readyTimeout, func() bool {
		for _, w := range workers {
			need := 20 // operations: IMAP every 100 ms, SMTP every 200 ms
			if strings.HasPrefix(w, "smtp") {
				need = 10
			}
			if l.okSince(w, killedAt) < need {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("not every worker recovered; failures: %v", l.failures()) })
	c.lb.WaitServer(t, feIMAPS, victim.name, "DOWN", readyTimeout)
	c.lb.WaitServer(t, feSMTPS, victim.name, "DOWN", readyTimeout)
	stopLoad()

	// Only the sessions the victim held broke, and no login failed.
	broken := map[string]bool{}
	for _, e := range l.failures() {
		t.Logf("%s +%v: %s", e.worker, e.at.Sub(killedAt).Round(time.Millisecond), e.what)
		if strings.HasPrefix(e.what, "login") {
			lines := c.lb.ConnectionLines(0, l.srcs[e.worker])
			t.Errorf("worker %s: a login failed: %s\nHAProxy's last lines for %s:\n%s", e.worker, e.what, l.srcs[e.worker],
				strings.Join(lines[max(0, len(lines)-4):], "\n"))
		}
		if broken[e.worker] {
			t.Errorf("worker %s failed more than once", e.worker)
		}
		broken[e.worker] = true
	}
	var imapBroken, smtpBroken int
	for w := range broken {
		if strings.HasPrefix(w, "imap") {
			imapBroken++
		} else {
			smtpBroken++
		}
	}
	if imapBroken == 0 || smtpBroken == 0 {
		t.Fatalf("sessions broken by the kill: %d IMAP, %d SMTP; want some of each (HAProxy spreads 6 IMAP and 4 SMTP sessions over 3 replicas)", imapBroken, smtpBroken)
	}
	stats, lostReplies := l.checkMaildirs()
	t.Logf("messages: %d acknowledged, %d failed before being sent whole, %d with the reply lost (%d of them stored); %d IMAP and %d SMTP sessions broken, all resumed",
		stats[stored], stats[notSent], stats[unknown], lostReplies, imapBroken, smtpBroken)
	if stats[stored] < 50 {
		t.Errorf("only %d messages acknowledged: the load was too light to mean much", stats[stored])
	}
}

// TestRollingRestart: each replica in turn gets SIGTERM and is started
// again while clients keep logging in (new connections, IMAP and SMTP)
// through HAProxy. /readyz turns 503 at once, HAProxy takes the replica out
// while it still accepts (cluster.drain_delay), the replica exits 0 and
// comes back, HAProxy puts it back: no login fails.
func TestRollingRestart(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var failures []string
	var stop atomic.Bool
	var wg sync.WaitGroup
	tok := c.mint(alice)
	worker := func(name, src string, smtp bool) {
		defer wg.Done()
		for !stop.Load() {
			var err error
			if smtp {
				var sc *client
				if sc, err = smtpLogin(src, c.lb.Addr(feSMTPS), c.clientTLS, alice, tok); err == nil {
					_, err = sc.smtpCmd("QUIT", "221")
					sc.Close()
				}
			} else {
				ic, reply, lerr := imapLogin(src, c.lb.Addr(feIMAPS), c.clientTLS, alice, tok)
				err = lerr
				if err == nil {
					if !strings.HasPrefix(reply, "a1 OK") {
						err = fmt.Errorf("refused: %s", reply)
					} else if _, lerr := ic.imapCmd("a2", "LOGOUT"); lerr != nil && !isIOError(lerr) {
						err = lerr
					}
					ic.Close()
				}
			}
			if err != nil {
				failed.Add(1)
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), name, err))
				mu.Unlock()
				continue
			}
			ok.Add(1)
		}
	}
	for i := range 3 {
		wg.Add(1)
		go worker(fmt.Sprintf("imap%d", i), fmt.Sprintf("127.0.3.%d", 10+i), false)
	}
	for i := range 2 {
		wg.Add(1)
		go worker(fmt.Sprintf("smtp%d", i), fmt.Sprintf("127.0.4.%d", 10+i), true)
	}
	defer func() { stop.Store(true); wg.Wait() }()
	waitFor(t, readyTimeout, func() bool { return ok.Load() >= 20 }, func() string { return fmt.Sprintf("logins: %d ok, %d failed", ok.Load(), failed.Load()) })

	for _, r := range c.reps {
		before := ok.Load()
		sigAt := time.Now()
		r.signal(syscall.SIGTERM)
		// The balancer takes it out while it still runs and accepts.
		for _, fe := range c.frontendsOf(r) {
			c.lb.WaitServer(t, fe, r.name, "DOWN", readyTimeout)
		}
		if !r.running() {
			t.Fatalf("replica %s exited %v after SIGTERM, before HAProxy took it out (drain_delay %v)", r.name, time.Since(sigAt), drainDelay)
		}
		if code, body, _ := r.get("/readyz"); code != 503 {
			t.Errorf("replica %s draining: /readyz %d %q, want 503", r.name, code, body)
		}
		if err := r.waitExit(readyTimeout); err != nil {
			t.Errorf("replica %s exit after SIGTERM: %v", r.name, err)
		}
		t.Logf("replica %s: out of the balancer and stopped in %v", r.name, time.Since(sigAt).Round(10*time.Millisecond))
		r.start()
		r.waitReady()
		for _, fe := range c.frontendsOf(r) {
			c.lb.WaitServer(t, fe, r.name, "UP", readyTimeout)
		}
		if ok.Load() == before {
			t.Errorf("no login completed while %s restarted", r.name)
		}
	}
	// Every restarted replica serves again.
	waitFor(t, readyTimeout, func() bool {
		for _, r := range c.reps {
			if sumMetric(r.metrics(), "mailgate_authentications_total", `result="ok"`) == 0 {
				return false
			}
		}
		return true
	}, func() string { return "a restarted replica got no login" })
	stop.Store(true)
	wg.Wait()
	t.Logf("logins during the rolling restart: %d ok, %d failed", ok.Load(), failed.Load())
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d logins failed during the rolling restart:\n%s", n, strings.Join(failures, "\n"))
	}
}

// frontendsOf returns the HAProxy frontends r is a server of.
func (c *cluster) frontendsOf(r *replica) []string {
	if r == c.reps[0] {
		return []string{feIMAPS, feSMTPS, feIMAPSOne}
	}
	return []string{feIMAPS, feSMTPS}
}
