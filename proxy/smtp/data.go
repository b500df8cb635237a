package smtp

import (
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// DATA and BDAT: the body is streamed from the client to the backend's DATA
// through a fixed buffer, never held whole. The client hears the backend's
// final reply. If the body cannot be read completely (client gone, too
// slow, too large, RSET during BDAT), the backend connection is closed
// without the final dot, so the backend discards the partial message.

var (
	replyDataTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout waiting for message data, closing connection"}
	replyDataAborted = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message transfer aborted"}
	replyLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 6}, Message: "Line too long"}
)

// Data relays one message body. BDAT chunks arrive through r as one stream
// (go-smtp converts them); the backend always gets DATA.
func (ss *session) Data(r io.Reader) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	cc := ss.cc
	timeout := ss.f.opts.DataTimeout
	cc.dataIdle.Store(int64(timeout))
	defer cc.dataIdle.Store(0)
	wr := &resetWatch{r: r}
	r = wr
	defer func() {
		if wr.reset {
			// A BDAT transaction was cut off (RSET, EHLO, or a chunk over
			// SIZE). go-smtp v0.25.1's BDAT goroutine reports its result
			// through a field that the next BDAT transaction replaces (a
			// data race that can answer the next message with this one's
			// result), so end the connection after the next reply instead
			// of letting another BDAT transaction start.
			cc.log.Debug("BDAT transfer reset: closing after the next reply")
			cc.closeAfterWrite.Store(true)
		}
	}()

	if ss.sess == nil {
		return replyAuthRequired
	}
	be := ss.be
	if be == nil || !ss.inTx {
		drainBody(r)
		return replyBackendLost
	}
	start := time.Now()
	w, err := be.c.Data()
	if err != nil {
		drainBody(r) // the client sends the body after go-smtp's 354 anyway
		return ss.backendError("DATA", err)
	}
	n, rerr, werr := copyBody(w, r, be.raw, timeout)
	ss.f.obs.Relayed("smtp", "up", int(n))
	if rerr == nil && werr == nil && cc.sawEOF.Load() {
		// go-smtp ended a BDAT chunk early at the client's EOF and passed
		// the short body on as complete.
		rerr = io.ErrUnexpectedEOF
	}
	switch {
	case rerr != nil:
		// Never w.Close(): its final dot would commit a truncated message.
		ss.dropBackend(false)
		reply := dataReadError(rerr)
		if reply.Code == 421 {
			cc.closeAfterWrite.Store(true)
		}
		cc.log.Info("message aborted", "reason", rerr.Error(), "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
		ss.f.obs.SMTPMessage("aborted", n)
		return reply
	case werr != nil:
		ss.dropBackend(false)
		drainBody(r)
		cc.log.Warn("backend connection failed", "cmd", "DATA", "err", werr, "bytes", n)
		ss.f.obs.SMTPMessage("aborted", n)
		return replyBackendLost
	}
	resp, err := w.CloseWithResponse()
	ss.inTx = false // ended by the backend's reply either way
	if err != nil {
		cc.log.Info("message refused", "bytes", n, "duration", time.Since(start).Round(time.Millisecond), "err", err)
		result := "rejected"
		if _, ok := err.(*smtp.SMTPError); !ok {
			result = "aborted" // the connection failed: the backend may or may not have it
		}
		ss.f.obs.SMTPMessage(result, n)
		return ss.backendError("DATA", err)
	}
	ss.f.obs.SMTPMessage("ok", n)
	ss.messages++
	cc.log.Info("message relayed", "bytes", n, "rcpts", ss.rcpts, "duration", time.Since(start).Round(time.Millisecond),
		"reply", resp.StatusText)
	return success(resp.StatusText)
}

// bodyBufSize is the copy buffer of a message body, borrowed from a pool
// while a body flows.
const bodyBufSize = 32 << 10

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}

// copyBody copies r to w through a pooled buffer, bounding each write to the
// backend by timeout. rerr is a failure to read r (the client's side), werr
// a failure to write w (the backend's side).
func copyBody(w io.Writer, r io.Reader, backend net.Conn, timeout time.Duration) (n int64, rerr, werr error) {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	for {
		nr, err := r.Read(buf)
		if nr > 0 {
			backend.SetWriteDeadline(time.Now().Add(timeout))
			nw, err := w.Write(buf[:nr])
			n += int64(nw)
			if err != nil {
				return n, nil, err
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// dataReadError is the reply when the body could not be read.
func dataReadError(err error) *smtp.SMTPError {
	var ne net.Error
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		return smtp.ErrDataTooLarge // 552 5.3.4
	case errors.Is(err, smtp.ErrTooLongLine):
		return replyLineTooLong
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return replyDataTimeout
	default: // client gone, or RSET during BDAT: nobody reads the reply
		return replyDataAborted
	}
}

// success carries the backend's final 250 text (with the queue id) to
// the client: go-smtp writes the code and text of an *SMTPError returned by
// Data as is, 250 included.
func success(text string) error {
	code, msg := smtp.EnhancedCodeNotSet, text
	if first, rest, ok := strings.Cut(text, " "); ok {
		if ec, ok := parseEnhancedCode(first); ok && ec[0] == 2 {
			code, msg = ec, rest
		}
	}
	if msg == "" {
		msg = "Ok"
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: code, Message: msg}
}

// parseEnhancedCode parses "2.0.0".
func parseEnhancedCode(s string) (smtp.EnhancedCode, bool) {
	var ec smtp.EnhancedCode
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return ec, false
	}
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || v > 999 {
			return ec, false
		}
		ec[i] = v
	}
	return ec, true
}

// resetWatch records whether a body reader reported smtp.ErrDataReset.
type resetWatch struct {
	r     io.Reader
	reset bool
}

func (w *resetWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if errors.Is(err, smtp.ErrDataReset) {
		w.reset = true
	}
	return n, err
}
