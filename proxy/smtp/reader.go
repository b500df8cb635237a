package smtp

import (
	"net"

	"github.com/mailgate/mailgate/proxy"
)

// The client's command reader is proxy.CommandReader. RFC 5321 caps a
// command line at 512 octets, but AUTH lines and SASL responses carry
// bearer tokens of several KiB: before login a line may take
// maxCommandLine, an AUTH line or a SASL response Limits.MaxLine, and one
// command's lines together Limits.MaxPreloginBytes. After login every
// command line has maxSessionLine (Postfix's line_length_limit), and no
// budget. Message bodies are read past the line buffer (data.go).

const (
	// maxCommandLine caps a command line before login, CRLF included:
	// RFC 5321's 512 octets, with room for clients that go a little over.
	maxCommandLine = 1024
	// maxSessionLine caps a command line after login: MAIL and RCPT with
	// every extension's parameters (Postfix's line_length_limit).
	maxSessionLine = 2048
	// clientBufSize is the client reader's buffer: commands, and the first
	// bytes of a body (the rest is read past it).
	clientBufSize = 4096
)

var (
	errLineTooLong     = proxy.ErrLineTooLong
	errCommandTooLarge = proxy.ErrCommandTooLarge
)

type (
	reader  = proxy.CommandReader
	command = proxy.Command
)

func newReader(nc net.Conn, long, quota int) *reader {
	return proxy.NewCommandReader(nc, clientBufSize, maxCommandLine, max(long, maxCommandLine), max(quota, maxCommandLine))
}

// loggedIn switches r to the caps of a session.
func loggedIn(r *reader) { r.Short, r.Long, r.Quota = maxSessionLine, maxSessionLine, 0 }
