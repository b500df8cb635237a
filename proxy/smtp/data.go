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
)

// DATA and BDAT: the message goes to the backend as the client sent it,
// streamed through a pooled buffer, never held whole, and the client hears
// the backend's replies (354, then the final one) verbatim.
//
// DATA's body keeps its dot-stuffing: mailgate only watches line endings
// (dotFilter) for the end of data, CRLF "." CRLF, and normalises what could
// make the backend see another end: a bare LF becomes CRLF, and a dot that
// begins the line it starts, or ends a "." line with it, is doubled, so it
// stays content (SMTP smuggling, SEC Consult 2023). A bare CR is content
// for mailgate and Postfix alike and passes as it is.
//
// BDAT (RFC 3030) goes to the backend as BDAT with the same chunks.
//
// A message is never committed cut: if the body cannot be read whole
// (client gone, too slow, over the size limit, Shutdown's drain over), the
// backend connection is closed before the end of data (or the rest of a
// chunk), and the backend discards the message.

// bodyBufSize is the copy buffer of a message body, borrowed from a pool
// while a body flows. At least clientBufSize (proxy.CommandReader.ReadRaw).
const bodyBufSize = 64 << 10

var (
	bodyBufPool = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}
	outBufPool  = sync.Pool{New: func() any { b := make([]byte, 0, 2*bodyBufSize+2); return &b }}
)

// data runs DATA: forwarded, and on the backend's 354, the body.
func (s *session) data(cmd command) error {
	if s.be == nil {
		s.sc.reply(replyBackendLost)
		return nil
	}
	code, raw, err := s.be.roundTrip(cmd.Line, backendReplyTimeout)
	if err != nil {
		s.backendFailed("DATA", err)
		return nil
	}
	s.sc.replyBytes(raw)
	if code == 421 {
		s.dropBackend(false)
		return errClose
	}
	if code != 354 {
		return nil
	}
	if err := s.sc.flush(); err != nil { // the client waits for the 354
		s.dropBackend(false)
		return err
	}
	return s.body()
}

// Why a body could not be relayed whole.
var (
	errTooBig      = errors.New("smtp: message over the size limit")
	errBackendBody = errors.New("smtp: backend failed during the body")
)

// body relays DATA's body and then the backend's final reply.
func (s *session) body() error {
	start := time.Now()
	n, err := s.copyDot()
	s.f.obs.Relayed("smtp", "up", int(n))
	if err != nil {
		return s.bodyFailed(err, n, start)
	}
	return s.finalReply(n, start)
}

// copyDot copies the body from the client to the backend until the end of
// data, giving back to the reader what the client pipelined after it. n
// counts the client's bytes. Errors: errTooBig or errBackendBody (the
// client's body was read to its end), or the client's read error.
func (s *session) copyDot() (n int64, err error) {
	bp, op := bodyBufPool.Get().(*[]byte), outBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	defer outBufPool.Put(op)
	buf, limit := *bp, s.f.opts.MaxMessageBytes
	var f dotFilter
	var failed error // errTooBig or errBackendBody: read on, send nothing
	for {
		k, rerr := s.readPart(buf)
		out, used, done := f.scan(buf[:k], (*op)[:0])
		n += int64(used)
		if limit > 0 && n > limit && failed == nil {
			failed = errTooBig
			s.dropBackend(false)
		}
		if failed == nil {
			if werr := s.be.write(out, s.f.opts.DataTimeout); werr != nil {
				s.log.Warn("backend connection failed", "cmd", "DATA", "err", werr, "bytes", n)
				failed = errBackendBody
				s.dropBackend(false)
			}
		}
		if done {
			s.sc.r.Unread(buf[used:k])
			return n, failed
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// readPart reads the next part of a body under the data timeout, renewed
// for every part, so that a slow but live upload is never cut off.
func (s *session) readPart(buf []byte) (int, error) {
	if s.sc.stop.Load() == stopLevelAll {
		return 0, errShutdown
	}
	s.sc.nc.SetReadDeadline(time.Now().Add(s.f.opts.DataTimeout))
	if s.sc.stop.Load() == stopLevelAll { // Shutdown's deadline may have been undone
		return 0, errShutdown
	}
	return s.sc.r.ReadRaw(buf)
}

// errShutdown: Shutdown's drain time ended in the middle of a message.
var errShutdown = errors.New("smtp: server shutting down")

// finalReply reads the backend's reply to the end of data and passes it on.
func (s *session) finalReply(n int64, start time.Time) error {
	code, raw, err := s.be.readReply(backendSubmissionTimeout)
	rcpts := s.rcpts
	s.setTx(false)
	d := time.Since(start).Round(time.Millisecond)
	if err != nil { // the backend may or may not have the message
		s.f.obs.SMTPMessage("aborted", n)
		s.backendFailed("DATA", err)
		return nil
	}
	s.sc.replyBytes(raw)
	if code/100 != 2 {
		s.log.Info("message refused", "bytes", n, "duration", d, "reply", strings.TrimSpace(string(raw)))
		s.f.obs.SMTPMessage("rejected", n)
		if code == 421 {
			s.dropBackend(false)
			return errClose
		}
		return nil
	}
	s.messages++
	s.f.obs.SMTPMessage("ok", n)
	s.log.Info("message relayed", "bytes", n, "rcpts", rcpts, "duration", d, "reply", strings.TrimSpace(string(raw)))
	return nil
}

// bodyFailed answers a body that could not be relayed whole. The backend
// connection is closed already, or now, before the end of data.
func (s *session) bodyFailed(err error, n int64, start time.Time) error {
	s.dropBackend(false)
	s.f.obs.SMTPMessage("aborted", n)
	s.log.Info("message aborted", "reason", err.Error(), "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
	var ne net.Error
	switch {
	case errors.Is(err, errTooBig): // read to its end: the session goes on
		s.sc.reply(replyTooBig)
		return nil
	case errors.Is(err, errBackendBody):
		s.sc.reply(replyBackendLost)
		return nil
	case s.sc.stopping(): // Shutdown woke the read
		s.sc.reply(replyShutdown)
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		s.sc.reply(replyDataTimeout)
	}
	return errClose // client gone, or a reply that ends the connection
}

// bdat runs BDAT size [LAST]: the chunk goes to the backend after its
// command, the client hears the backend's reply.
func (s *session) bdat(cmd command) error {
	size, last, ok := parseBDAT(cmd.Args)
	if !ok {
		s.sc.reply(replyBadBDAT) // the chunk's end is unknown: the stream is lost
		return errClose
	}
	switch {
	case !s.inTx || s.be == nil:
		return s.skipChunk(size, replyNeedMail)
	case s.f.opts.MaxMessageBytes > 0 && s.chunked+size > s.f.opts.MaxMessageBytes:
		s.resetBackend()
		return s.skipChunk(size, replyTooBig)
	}
	start := time.Now()
	if err := s.be.send(cmd.Line, s.f.opts.DataTimeout); err != nil {
		s.log.Warn("backend connection failed", "cmd", "BDAT", "err", err)
		s.dropBackend(false)
		return s.skipChunk(size, replyBackendLost)
	}
	n, err := s.copyChunk(size)
	s.chunked += n
	s.f.obs.Relayed("smtp", "up", int(n))
	if err != nil {
		return s.bodyFailed(err, s.chunked, start)
	}
	return s.chunkReply(last, start)
}

// chunkReply reads the backend's reply to a chunk and passes it on; after
// the LAST chunk, the transaction is over.
func (s *session) chunkReply(last bool, start time.Time) error {
	if !last {
		return s.forwardReply(backendReplyTimeout)
	}
	return s.finalReply(s.chunked, start)
}

// forwardReply reads one backend reply and queues it for the client.
func (s *session) forwardReply(timeout time.Duration) error {
	code, raw, err := s.be.readReply(timeout)
	if err != nil {
		s.backendFailed("BDAT", err)
		return nil
	}
	s.sc.replyBytes(raw)
	if code == 421 {
		s.dropBackend(false)
		return errClose
	}
	return nil
}

// copyChunk copies size bytes from the client to the backend. A backend
// that fails meanwhile is dropped and the rest of the chunk read and
// discarded (errBackendBody).
func (s *session) copyChunk(size int64) (n int64, err error) {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	var failed error
	for n < size {
		k, rerr := s.readPart((*bp)[:min(int64(len(*bp)), size-n)])
		n += int64(k)
		if k > 0 && failed == nil {
			if werr := s.be.write((*bp)[:k], s.f.opts.DataTimeout); werr != nil {
				s.log.Warn("backend connection failed", "cmd", "BDAT", "err", werr, "bytes", n)
				failed = errBackendBody
				s.dropBackend(false)
			}
		}
		if rerr != nil && n < size {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return n, rerr
		}
	}
	return n, failed
}

// skipChunk reads a chunk that goes nowhere and answers it with line.
func (s *session) skipChunk(size int64, line string) error {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	for n := int64(0); n < size; {
		k, err := s.readPart((*bp)[:min(int64(len(*bp)), size-n)])
		n += int64(k)
		if err != nil && n < size {
			return errClose
		}
	}
	s.sc.reply(line)
	return nil
}

// parseBDAT parses BDAT's arguments: a chunk size, then LAST or nothing.
func parseBDAT(args []byte) (size int64, last bool, ok bool) {
	f := strings.Fields(string(args))
	if len(f) == 0 || len(f) > 2 || len(f[0]) > 18 {
		return 0, false, false
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 || f[0][0] == '+' {
		return 0, false, false
	}
	if len(f) == 2 {
		if !strings.EqualFold(f[1], "LAST") {
			return 0, false, false
		}
		last = true
	}
	return size, last, true
}
