package pop3

import (
	"io"

	"github.com/mailgate/mailgate/proxy"
)

// The pre-auth command reader is proxy.CommandReader. RFC 2449 caps a
// command line at 255 octets, but AUTH lines and SASL responses carry
// bearer tokens of several KiB: a line may take maxCommandLine, an AUTH
// line or a SASL response Limits.MaxLine, and one command's lines together
// Limits.MaxPreloginBytes.

// maxCommandLine caps a command line other than AUTH, CRLF included:
// RFC 2449's 255 octets, with room for clients that go a little over.
const maxCommandLine = 512

var (
	errLineTooLong     = proxy.ErrLineTooLong
	errCommandTooLarge = proxy.ErrCommandTooLarge
)

type (
	reader  = proxy.CommandReader
	command = proxy.Command
)

// newReader reads src through a buffer of bufSize bytes.
func newReader(src io.Reader, bufSize, long, quota int) *reader {
	return proxy.NewCommandReader(src, bufSize, maxCommandLine, max(long, maxCommandLine), max(quota, maxCommandLine))
}
