package proxy

import (
	"crypto/tls"
	"net"
	"sync"
)

// Bulk writes to a TLS peer (an IMAP FETCH relayed to the client, a message
// body to a backend reached over TLS) cost mostly system calls: crypto/tls
// writes every record (at most 16 KiB) with a write of its own, four for
// one 64 KiB relay chunk, each a trip through the TCP stack. batchConn sits
// under mailgate's tls.Conns and, while the relay writes one large chunk,
// collects the chunk's records and sends them with one write. Handshakes,
// small writes and alerts pass straight through.

// batchBufSize holds one relay chunk's records: the chunk plus each record's
// header, tag and content type (at most 29 bytes per 16 KiB record).
const batchBufSize = relayBufSize + 1<<10

var batchBufPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}

type batchConn struct {
	net.Conn
	mu  sync.Mutex // tls.Conn serializes its writes; this guards buf against Close's alert from another goroutine
	buf *[]byte    // non-nil while a chunk is written
	err error      // a failed flush inside a batch
}

// Write queues p while a batch is open, flushing first when p does not fit;
// otherwise it writes p at once.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(*b.buf)+len(p) > cap(*b.buf) {
		if b.err = b.flushLocked(); b.err != nil {
			return 0, b.err
		}
		if len(p) > cap(*b.buf) {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

func (b *batchConn) flushLocked() error {
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	return err
}

// batchWrite writes p to dst (a client connection, or a backend one that
// mailgate reaches over TLS), coalescing its TLS records into as few
// writes as they fit when dst is a tls.Conn over a batchConn and p spans
// several records. The error of a write the records
// were queued for is returned even though tc.Write reported success.
func batchWrite(dst net.Conn, p []byte) (int, error) {
	tc, ok := dst.(*tls.Conn)
	if !ok || len(p) <= 16<<10 {
		return dst.Write(p)
	}
	b, ok := tc.NetConn().(*batchConn)
	if !ok {
		return dst.Write(p)
	}
	b.mu.Lock()
	b.buf, b.err = batchBufPool.Get().(*[]byte), nil
	b.mu.Unlock()
	n, err := tc.Write(p)
	b.mu.Lock()
	ferr := b.err
	if ferr == nil {
		ferr = b.flushLocked()
	}
	batchBufPool.Put(b.buf)
	b.buf, b.err = nil, nil
	b.mu.Unlock()
	if err == nil && ferr != nil {
		return 0, ferr
	}
	return n, err
}
