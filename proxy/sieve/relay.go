package sieve

import (
	"bytes"
	"net"

	"github.com/mailgate/mailgate/proxy"
)

// responseTracker is the client connection during the relay. It follows
// the backend's stream as it is written to the client (lines, and the
// literals "{n}" CRLF announces, such as GETSCRIPT's script) so that a
// goodbye goes out only between two lines and never inside a literal: the
// relay's own check (the last byte was LF) is fooled by a script that
// ends a chunk with LF.
type responseTracker struct {
	net.Conn
	literal   int64 // bytes of a literal still to come
	lineStart bool  // the last byte ended a line (and no literal is pending)
	tail      []byte
}

// maxTail is how much of a line's end is kept to find a literal's "{n}".
const maxTail = maxLiteralDigits + 4 // "{" digits "+}" CR

// Write implements net.Conn.
func (t *responseTracker) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	t.scan(p[:n])
	return n, err
}

// CloseWrite half-closes the client connection, as the relay expects.
func (t *responseTracker) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// scan follows the stream through p.
func (t *responseTracker) scan(p []byte) {
	for len(p) > 0 {
		if t.literal > 0 {
			k := min(t.literal, int64(len(p)))
			t.literal -= k
			p = p[k:]
			t.lineStart = false
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.keepTail(p)
			t.lineStart = false
			return
		}
		t.keepTail(p[:i])
		if n, _, ok := trailingLiteral(bytes.TrimSuffix(t.tail, []byte("\r"))); ok {
			t.literal = n
		}
		t.tail = t.tail[:0]
		t.lineStart = t.literal == 0
		p = p[i+1:]
	}
}

// keepTail appends b to the end of the current line kept, at most maxTail.
func (t *responseTracker) keepTail(b []byte) {
	if len(b) >= maxTail {
		t.tail = append(t.tail[:0], b[len(b)-maxTail:]...)
		return
	}
	t.tail = append(t.tail, b...)
	if len(t.tail) > maxTail {
		t.tail = append(t.tail[:0], t.tail[len(t.tail)-maxTail:]...)
	}
}

// goodbye is the relay's goodbye for why (proxy.EndShutdown, EndExpired,
// EndRevoked): a BYE response, or nothing inside a response line or literal.
func (t *responseTracker) goodbye(why string) []byte {
	if !t.lineStart {
		return nil
	}
	switch why {
	case proxy.EndExpired:
		return []byte(`BYE "Access token expired, log in again."` + "\r\n")
	case proxy.EndRevoked:
		return []byte(`BYE "Access token no longer valid, log in again."` + "\r\n")
	case proxy.EndAppPassword:
		return []byte(`BYE "App password no longer valid."` + "\r\n")
	}
	return []byte(replyShutdown)
}
