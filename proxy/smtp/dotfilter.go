package smtp

import "bytes"

// dotFilter watches a DATA body as the client sends it, dot-stuffed (RFC
// 5321 section 4.5.2), for the end of data, CRLF "." CRLF, and normalises
// line endings so that the backend can find no other end: a bare LF is
// sent as CRLF, and a dot that would then begin a line, or a "." line
// ended by a bare LF, is doubled, so the backend unstuffs it back to
// content (what the client meant: for it, that dot was not at the start
// of a line). Everything else passes unchanged, dot-stuffing included.
// Its zero value is at the start of a body.
type dotFilter struct{ st dotState }

type dotState uint8

const (
	dsBOL     dotState = iota // at the start of a line: after CRLF, or the body's start
	dsBareBOL                 // at the start of a line a bare LF began
	dsDot                     // "." at the start of a line
	dsDotCR                   // "." CR at the start of a line
	dsCR                      // after a CR inside a line
	dsData                    // inside a line
)

// scan appends p, normalised, to out, up to and including the end of
// data if p holds it. used is how much of p was taken: all of it, or up
// to the end of data when done.
func (f *dotFilter) scan(p, out []byte) (_ []byte, used int, done bool) {
	i := 0
	for i < len(p) {
		if f.st == dsData { // the common case: copy up to the next CR or LF
			j := indexCRLF(p[i:])
			if j < 0 {
				return append(out, p[i:]...), len(p), false
			}
			out = append(out, p[i:i+j]...)
			i += j
		}
		c := p[i]
		i++
		if out, done = f.step(c, out); done {
			return out, i, true
		}
	}
	return out, i, false
}

// step appends c, normalised, to out, and reports the end of data.
func (f *dotFilter) step(c byte, out []byte) ([]byte, bool) {
	switch f.st {
	case dsBOL, dsBareBOL:
		switch c {
		case '.':
			if f.st == dsBareBOL { // not a line start for the client
				f.st = dsData
				return append(out, '.', '.'), false
			}
			f.st = dsDot
		case '\r':
			f.st = dsCR
		case '\n':
			f.st = dsBareBOL
			return append(out, '\r', '\n'), false
		default:
			f.st = dsData
		}
	case dsDot:
		switch c {
		case '\r':
			f.st = dsDotCR
		case '\n': // "." and a bare LF: the line "." as content, not the end
			f.st = dsBareBOL
			return append(out, '.', '\r', '\n'), false
		default:
			f.st = dsData
		}
	case dsDotCR:
		switch c {
		case '\n':
			return append(out, '\n'), true
		case '\r':
			f.st = dsCR
		default:
			f.st = dsData
		}
	case dsCR:
		switch c {
		case '\n':
			f.st = dsBOL
		case '\r':
		default:
			f.st = dsData
		}
	case dsData:
		switch c {
		case '\r':
			f.st = dsCR
		case '\n':
			f.st = dsBareBOL
			return append(out, '\r', '\n'), false
		}
	}
	return append(out, c), false
}

// indexCRLF is the index of the first CR or LF in b, -1 if none.
func indexCRLF(b []byte) int {
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 {
		lf = len(b)
	}
	if cr := bytes.IndexByte(b[:lf], '\r'); cr >= 0 {
		return cr
	}
	if lf == len(b) {
		return -1
	}
	return lf
}
