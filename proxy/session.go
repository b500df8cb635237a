package proxy

import (
	"context"
	"net"
	"sync"
	"time"
)

// Why a relay was stopped, as Relay passes it to the front's goodbye.
const (
	EndShutdown = "shutdown"              // the server's drain time is over
	EndExpired  = "token expired"         // the token's exp passed (sessionEnd endExpired)
	EndRevoked  = "token no longer valid" // revalidation refused the token (endRevoked)
	// EndAppPassword: the app password that opened the session was
	// revoked, expired or suspended (AppPasswordOptions.Checker).
	EndAppPassword = "app password no longer valid"
)

// Relay hands the client over to sess's backend: the protocol-blind byte
// relay (pendingUp, bytes the front read ahead from the client, and
// sess.Pending go first) until either side closes, the client idles past
// Limits.IdleTimeout, the server's drain time ends, or the token's lifetime
// does (Options.Lifetime). bye, if set, is the goodbye for why (EndShutdown,
// EndExpired, EndRevoked), written to the client only at a line boundary of
// the backend's stream; nil (or a nil result) just closes. Relay closes the
// backend connection and logs the session's end.
func (c *Conn) Relay(ctx context.Context, client net.Conn, pendingUp []byte, sess *Session, bye func(why string) []byte) {
	s, log := c.s, sess.Log
	defer sess.Conn.Close()
	log.Info("relay started", "preauth", time.Since(c.Start).Round(time.Millisecond))
	var (
		stop     relayStopper
		stopOnce sync.Once
		stopWhy  string // written before Stop
	)
	end := func(why string) { stopOnce.Do(func() { stopWhy = why; stop.Stop() }) }
	stopDrain := context.AfterFunc(s.drainCtx, func() { end(EndShutdown) })
	defer stopDrain()
	defer c.Watch(sess, end)()
	pendingDown := sess.Pending
	sess.Pending, sess.Reply = nil, nil
	st := relay(ctx, relayEnds{
		client: client, backend: sess.Conn,
		pendingUp: pendingUp, pendingDown: pendingDown,
		idle:  s.limits.IdleTimeout,
		stop:  &stop,
		count: func(up bool, n int) { s.countRelayed(c.proto, up, n) },
	})
	if st.reason == "stopped" {
		st.reason = stopWhy
		if bye != nil && st.lastDown == '\n' {
			client.SetWriteDeadline(time.Now().Add(time.Second))
			client.Write(bye(stopWhy))
		}
	}
	log.Info("session ended", "duration", time.Since(c.Start).Round(time.Millisecond),
		"bytes_up", st.up, "bytes_down", st.down, "end", st.reason)
}

// Watch arranges for end to be called, at most once and from another
// goroutine, when sess's authentication must end (Options.Lifetime): why
// is EndExpired or EndRevoked for a token session, EndAppPassword for an
// app-password session (AppPasswordOptions.RecheckEvery). A password
// session is never watched. The returned stop must be called when the
// session ends; after it returns end is not called. Relay does this
// itself; a front with a relay of its own calls it once per session (it
// takes the token sess keeps for revalidation).
func (c *Conn) Watch(sess *Session, end func(why string)) (stop func()) {
	if sess.AppPassword != "" {
		return c.s.watchAppPassword(sess, c.proto, c.Raw.RemoteAddr().String(), func(why sessionEnd) { end(why.String()) })
	}
	if sess.Password {
		return func() {}
	}
	stop = c.s.watchSession(sess.Identity, sess.token, c.Raw.RemoteAddr().String(), sess.Log,
		func(why sessionEnd) { end(why.String()) })
	sess.token = ""
	return stop
}

func (s *Server) countRelayed(proto string, up bool, n int) {
	if up {
		s.obs.Relayed(proto, "up", n)
	} else {
		s.obs.Relayed(proto, "down", n)
	}
}
