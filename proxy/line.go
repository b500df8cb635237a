package proxy

import (
	"bufio"
	"errors"
	"io"
)

// errLineTooLong: a line exceeds its cap (ReadLine, readLimitedLine).
var errLineTooLong = errors.New("line too long")

// readLimitedLine returns one line without its CRLF (a bare LF is
// tolerated), or errLineTooLong once it would exceed max bytes, without
// buffering more than that. The returned slice may point into br's buffer:
// it is only valid until the next read. EOF inside a line is
// io.ErrUnexpectedEOF.
func readLimitedLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		if err == nil {
			if line == nil {
				line = frag
			} else {
				line = append(line, frag...)
			}
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(line)+len(frag) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = append(line, frag...)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
