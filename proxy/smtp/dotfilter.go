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

// scan normalises p up to and including the end of data if p holds it.
// res is what to send: p[:used] itself when out is empty and nothing
// needed normalising (the common case: no copy; send it before the next
// scan and never append to it), else out with p's normalised bytes
// appended. used is how much of p was taken: all of it, or up to the end
// of data when done.
func (f *dotFilter) scan(p, out []byte) (res []byte, used int, done bool) {
	e := edits{p: p, out: out}
	i := 0
	for i < len(p) {
		if f.st == dsData || f.st == dsCR { // inside a line: on to its LF
			var ok bool
			if i, ok = f.toLineEnd(&e, i); !ok {
				return e.result(len(p)), len(p), false
			}
			continue
		}
		i++
		if f.step(&e, i-1) {
			return e.result(i), i, true
		}
	}
	return e.result(i), i, false
}

// edits builds scan's output lazily: p's bytes are taken as they are, and
// copied to out only once something has to be inserted.
type edits struct {
	p, out []byte
	mark   int // p[:mark] is in out
	edited bool
}

// insert puts b before p[at].
func (e *edits) insert(at int, b ...byte) {
	e.out = append(append(e.out, e.p[e.mark:at]...), b...)
	e.mark, e.edited = at, true
}

// result is the output for p[:end].
func (e *edits) result(end int) []byte {
	if !e.edited && len(e.out) == 0 {
		return e.p[:end]
	}
	return append(e.out, e.p[e.mark:end]...)
}

// toLineEnd takes p[i:] up to and including the next LF (a bare one
// becomes CRLF) and returns the index after it; ok is false if p has no
// LF left (all of it was taken). The common case: one IndexByte per line.
func (f *dotFilter) toLineEnd(e *edits, i int) (next int, ok bool) {
	p := e.p
	j := bytes.IndexByte(p[i:], '\n')
	if j < 0 {
		if p[len(p)-1] == '\r' {
			f.st = dsCR
		} else {
			f.st = dsData
		}
		return len(p), false
	}
	lf := i + j
	if j > 0 && p[lf-1] == '\r' || j == 0 && f.st == dsCR {
		f.st = dsBOL
		return lf + 1, true
	}
	e.insert(lf, '\r')
	f.st = dsBareBOL
	return lf + 1, true
}

// step takes p[at], normalised, and reports the end of data. It runs at
// the start of a line (the states before dsCR); toLineEnd runs inside one.
func (f *dotFilter) step(e *edits, at int) bool {
	c := e.p[at]
	switch f.st {
	case dsBOL, dsBareBOL:
		switch c {
		case '.':
			if f.st == dsBareBOL { // not a line start for the client
				e.insert(at, '.')
				f.st = dsData
				return false
			}
			f.st = dsDot
		case '\r':
			f.st = dsCR
		case '\n':
			e.insert(at, '\r')
			f.st = dsBareBOL
		default:
			f.st = dsData
		}
	case dsDot:
		switch c {
		case '\r':
			f.st = dsDotCR
		case '\n': // "." and a bare LF: the line "." as content, not the end
			e.insert(at, '.', '\r')
			f.st = dsBareBOL
		default:
			f.st = dsData
		}
	case dsDotCR:
		switch c {
		case '\n':
			return true
		case '\r':
			f.st = dsCR
		default:
			f.st = dsData
		}
	}
	return false
}
