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
		if f.st == dsData || f.st == dsCR { // inside a line: on to its LF
			var ok bool
			if out, i, ok = f.toLineEnd(p, i, out); !ok {
				return out, len(p), false
			}
			continue
		}
		c := p[i]
		i++
		if out, done = f.step(c, out); done {
			return out, i, true
		}
	}
	return out, i, false
}

// toLineEnd copies p[i:] up to and including the next LF (a bare one as
// CRLF) and returns the index after it; ok is false if p has no LF left
// (all of it was copied). The common case: one IndexByte per line.
func (f *dotFilter) toLineEnd(p []byte, i int, out []byte) (_ []byte, next int, ok bool) {
	j := bytes.IndexByte(p[i:], '\n')
	if j < 0 {
		out = append(out, p[i:]...)
		if p[len(p)-1] == '\r' {
			f.st = dsCR
		} else {
			f.st = dsData
		}
		return out, len(p), false
	}
	crBefore := j > 0 && p[i+j-1] == '\r' || j == 0 && f.st == dsCR
	out = append(out, p[i:i+j]...)
	if crBefore {
		f.st = dsBOL
		return append(out, '\n'), i + j + 1, true
	}
	f.st = dsBareBOL
	return append(out, '\r', '\n'), i + j + 1, true
}

// step appends c, normalised, to out, and reports the end of data. It
// runs at the start of a line (the states before dsCR); toLineEnd runs
// inside one.
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
	}
	return append(out, c), false
}
