package apppass

import (
	"database/sql"
	"net/netip"
	"slices"
	"time"
)

// Record describes one app password. It never holds the password or its
// hash.
type Record struct {
	// ID is the public lookup id, also embedded in the password; it names
	// the password in lists, logs and Revoke.
	ID string
	// User is the mailbox address it opens, lower case.
	User string
	// Name is the user's label for it ("phone").
	Name string
	// Protocols is its scope.
	Protocols []Protocol
	// Created is when it was made.
	Created time.Time
	// Expires is when it stops working. Zero: never.
	Expires time.Time
	// LastUsed is its last successful login, to the minute (Verify writes
	// it at most once a minute). Zero: never used.
	LastUsed time.Time
	// LastAddr is the client IP address of LastUsed ("" if unknown).
	LastAddr string
}

// Allows reports whether proto is in the scope.
func (r Record) Allows(proto Protocol) bool { return slices.Contains(r.Protocols, proto) }

// Expired reports whether the password has expired at now.
func (r Record) Expired(now time.Time) bool { return !r.Expires.IsZero() && !now.Before(r.Expires) }

// recordColumns are the columns scanRecord reads, in its order.
const recordColumns = `p.id, p.username, p.name, p.protocols, p.created_at, p.expires_at, p.last_used_at, p.last_used_ip`

// scanRecord returns the scan destinations of recordColumns and a
// function that fills r from them once scanned.
func scanRecord(r *Record) (dest []any, finish func()) {
	var protocols string
	var created int64
	var expires, lastUsed sql.NullInt64
	dest = []any{&r.ID, &r.User, &r.Name, &protocols, &created, &expires, &lastUsed, &r.LastAddr}
	return dest, func() {
		r.Protocols = splitProtocols(protocols)
		r.Created = timeOf(created)
		r.Expires = fromMicros(expires)
		r.LastUsed = fromMicros(lastUsed)
	}
}

// clientAddr returns the IP address in s ("ip" or "ip:port"), or "".
func clientAddr(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return ""
}
