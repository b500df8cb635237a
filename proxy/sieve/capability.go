package sieve

import (
	"bufio"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/mailgate/proxy"
)

// The capability response (RFC 5804 §1.8) is mailgate's own IMPLEMENTATION,
// SASL, STARTTLS and VERSION, with the backend's Sieve capabilities (SIEVE,
// NOTIFY, MAXREDIRECTS). Clients read these before they log in, and many
// never ask again, so they should be Dovecot's: they are learned from the
// backend's greeting, by a background probe on the first connection
// (retried at most every relearnEvery while it fails), by every login's
// backend dialog and by every Probe. Until the backend has been reached
// once, defaultSieveCaps is listed: extensions every Pigeonhole release
// has enabled by default, so that a client never sees one that the
// backend would refuse (enotify is left out, as it needs NOTIFY too).

// implementation is the IMPLEMENTATION capability's value.
const implementation = "mailgate"

// defaultSieveCaps are the Sieve capability lines before any is learned.
var defaultSieveCaps = []string{`"SIEVE" "fileinto reject envelope encoded-character vacation subaddress ` +
	`comparator-i;ascii-numeric relational regex imap4flags copy include variables body"`}

// relearnEvery is the least time between two background capability
// probes while none has succeeded; learnTimeout bounds one.
const (
	relearnEvery = 30 * time.Second
	learnTimeout = 10 * time.Second
)

// capabilities is what a ManageSieve server's capability response says.
type capabilities struct {
	sasl     []string // SASL mechanisms, upper case; none: authentication not offered
	starttls bool
	xclient  bool
	sieve    []string // the lines mailgate passes on, `"SIEVE" "..."` and the like
}

// add takes one capability line: its name and its value, if any.
func (c *capabilities) add(fields []string) {
	name := strings.ToUpper(fields[0])
	value, hasValue := "", len(fields) > 1
	if hasValue {
		value = fields[1]
	}
	switch name {
	case "SASL":
		c.sasl = strings.Fields(strings.ToUpper(value))
	case "STARTTLS":
		c.starttls = true
	case "XCLIENT":
		c.xclient = true
	case "SIEVE", "NOTIFY", "MAXREDIRECTS":
		if hasValue {
			c.sieve = append(c.sieve, quote(name)+" "+quote(value))
		}
	}
}

// hasMech reports whether the server offers the SASL mechanism m.
func (c capabilities) hasMech(m string) bool { return slices.Contains(c.sasl, m) }

// readCapabilities reads a capability response (a greeting, or the one
// after STARTTLS or CAPABILITY) up to its OK.
func readCapabilities(br *bufio.Reader) (capabilities, error) {
	var c capabilities
	for range maxCapabilityLines {
		r, err := readResponse(br)
		if err != nil {
			return c, err
		}
		switch r.status {
		case "OK":
			return c, nil
		case "NO", "BYE":
			return c, fmt.Errorf("refused: %q", proxy.Truncate(r.raw))
		}
		c.add(r.fields)
	}
	return c, fmt.Errorf("more than %d capability lines", maxCapabilityLines)
}

// capCache holds the backend's Sieve capability lines. The zero value
// lists defaultSieveCaps and has not tried to learn any.
type capCache struct {
	mu       sync.Mutex
	lines    []string // nil: none learned yet
	lastTry  time.Time
	learning bool
}

// get returns the lines to list, learned or default.
func (cc *capCache) get() []string {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.lines == nil {
		return defaultSieveCaps
	}
	return cc.lines
}

// learn keeps c's Sieve lines, if it has a SIEVE line.
func (cc *capCache) learn(c capabilities) {
	if !slices.ContainsFunc(c.sieve, func(l string) bool { return strings.HasPrefix(l, `"SIEVE" `) }) {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.lines = c.sieve
}

// begin reports whether a background probe should start now (nothing
// learned, none running, the last try long enough ago) and marks one as
// running; end marks it done.
func (cc *capCache) begin(now time.Time) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.lines != nil || cc.learning || now.Sub(cc.lastTry) < relearnEvery {
		return false
	}
	cc.learning, cc.lastTry = true, now
	return true
}

func (cc *capCache) end() {
	cc.mu.Lock()
	cc.learning = false
	cc.mu.Unlock()
}

// capabilityLines is the capability response's body (each line with
// CRLF) for a client on TLS or not, with password passthrough or not.
func (f *Front) capabilityLines(isTLS, passwords bool) string {
	var b strings.Builder
	b.WriteString(`"IMPLEMENTATION" ` + quote(implementation) + "\r\n")
	for _, l := range f.caps.get() {
		b.WriteString(l + "\r\n")
	}
	b.WriteString(`"SASL" ` + quote(mechanisms(isTLS, passwords)) + "\r\n")
	if !isTLS {
		b.WriteString(`"STARTTLS"` + "\r\n")
	}
	b.WriteString(`"VERSION" "1.0"` + "\r\n")
	return b.String()
}

// mechanisms is the SASL capability's value: none before TLS.
func mechanisms(isTLS, passwords bool) string {
	switch {
	case !isTLS:
		return ""
	case passwords:
		return "OAUTHBEARER XOAUTH2 PLAIN LOGIN"
	}
	return "OAUTHBEARER XOAUTH2"
}
