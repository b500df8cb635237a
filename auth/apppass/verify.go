package apppass

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// lastUseResolution is how stale the stored last use may get: Verify
// writes it only when it is older, so that a password in constant use
// (a phone polling every few seconds, 50 logins at once) costs one write
// a minute, not one per login.
const lastUseResolution = time.Minute

// Verify checks a login of user (the mailbox address the client gave)
// with password over proto from clientIP ("ip" or "ip:port"), and returns
// the password's record. Errors:
//
//   - ErrNotAppPassword, at once: password does not have the form of an
//     app password (try it as a password). Nothing is hashed or read.
//   - a *Refusal wrapping ErrInvalid, ErrProtocol or ErrSuspended, and
//     auth.ErrInvalidCredentials: refused (its Reason is for the log).
//   - an error wrapping auth.ErrUnavailable: the store failed (or ctx
//     ended); a temporary failure for the client.
//
// Every well-formed password costs exactly one hash, whether its id
// exists or not, so that timing tells nothing and a wrong guess costs the
// guesser as much as the server. The scope and the suspension are told
// only to a client that knows the secret. A success records the use
// (time and address) when the stored one is over a minute old.
func (s *Store) Verify(ctx context.Context, user, password string, proto Protocol, clientIP string) (Record, error) {
	pw, ok := parsePassword(password)
	if !ok {
		return Record{}, ErrNotAppPassword
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	mailbox, userErr := auth.ParseMailbox(user)
	var row verifyRow
	if userErr == nil {
		var err error
		if row, err = s.lookup(ctx, pw.id); err != nil {
			return Record{}, err
		}
	}
	match, err := s.compare(ctx, pw, row)
	if err != nil {
		return Record{}, err
	}
	if kind, reason := s.judge(row, match, mailbox, userErr, proto); kind != nil {
		return Record{}, &Refusal{Err: kind, Reason: reason, ID: pw.id}
	}
	s.touch(ctx, &row.rec, clientIP)
	return row.rec, nil
}

// judge returns why a login is refused (kind nil: it is not). The
// order matters: nothing about the password but "invalid" is told before
// the secret matched.
func (s *Store) judge(row verifyRow, match bool, mailbox string, userErr error, proto Protocol) (kind error, reason string) {
	switch {
	case userErr != nil:
		return ErrInvalid, "invalid user name"
	case !row.found:
		return ErrInvalid, "unknown id"
	case row.revoked:
		return ErrInvalid, "revoked"
	case !match:
		return ErrInvalid, "wrong secret"
	case row.rec.User != mailbox:
		return ErrInvalid, "another user's password (of " + row.rec.User + ")"
	case row.rec.Expired(s.now()):
		return ErrInvalid, "expired"
	case row.suspended:
		return ErrSuspended, "suspended: " + row.suspendReason
	case !row.rec.Allows(proto):
		return ErrProtocol, fmt.Sprintf("protocol %q not in its scope %s", proto, joinProtocols(row.rec.Protocols))
	case !s.policy.allows(proto):
		return ErrProtocol, fmt.Sprintf("protocol %q not allowed by the policy", proto)
	}
	return nil, ""
}

// verifyRow is what Verify reads about one id.
type verifyRow struct {
	found         bool
	rec           Record
	hash          string // "" once revoked
	revoked       bool
	suspended     bool
	suspendReason string
}

// lookup reads the password id and its user's provider link state.
func (s *Store) lookup(ctx context.Context, id string) (verifyRow, error) {
	var row verifyRow
	var revoked, suspended sql.NullInt64
	dest, finish := scanRecord(&row.rec)
	err := s.db.QueryRowContext(ctx, `SELECT `+recordColumns+`, p.hash, p.revoked_at,
			l.suspended_at, COALESCE(l.suspend_reason, '')
		FROM app_passwords p LEFT JOIN provider_links l ON l.username = p.username
		WHERE p.id = $1`, id).Scan(append(dest, &row.hash, &revoked, &suspended, &row.suspendReason)...)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return verifyRow{}, nil
	case err != nil:
		return verifyRow{}, unavailable("verify", err)
	}
	finish()
	row.found, row.revoked, row.suspended = true, revoked.Valid, suspended.Valid
	return row, nil
}

// compare runs the one hash of a login: against the stored hash, or, when
// there is none, a fresh hash of the same cost.
func (s *Store) compare(ctx context.Context, pw password, row verifyRow) (bool, error) {
	var match bool
	var stored error // a stored hash that cannot be read: a refusal, logged with its reason
	err := s.withHash(ctx, func() error {
		if !row.found || row.hash == "" {
			_, err := s.hasher.Hash([]byte(pw.value))
			return err
		}
		match, stored = s.hasher.Compare([]byte(pw.value), row.hash)
		return nil
	})
	if err != nil {
		if errors.Is(err, auth.ErrUnavailable) {
			return false, err
		}
		return false, fmt.Errorf("apppass: verify: %w", err)
	}
	if stored != nil {
		return false, &Refusal{Err: ErrInvalid, Reason: "stored hash: " + stored.Error(), ID: pw.id}
	}
	return match, nil
}

// touch records a successful use in the store and in rec, unless the
// stored one is recent. A failure only logs: the login itself is good.
func (s *Store) touch(ctx context.Context, rec *Record, clientIP string) {
	now := s.storedNow()
	if !rec.LastUsed.IsZero() && now.Sub(rec.LastUsed) < lastUseResolution {
		return
	}
	addr := clientAddr(clientIP)
	_, err := s.db.ExecContext(ctx, `UPDATE app_passwords SET last_used_at = $1, last_used_ip = $2
		WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $4)`,
		micros(now), addr, rec.ID, micros(now.Add(-lastUseResolution)))
	if err != nil {
		s.log.Warn("apppass: cannot record the last use of an app password", "id", rec.ID, "user", rec.User, "err", err)
		return
	}
	rec.LastUsed, rec.LastAddr = now, addr
}

// StillValid reports whether the app password id, which opened a session
// of user over proto, may still: nil, or a *Refusal (revoked, expired,
// suspended, taken out of scope) wrapping auth.ErrInvalidCredentials, for
// the session to end; an error wrapping auth.ErrUnavailable when the store
// failed (the session goes on). No hash: the session proved the secret at
// its login. One read, no write.
func (s *Store) StillValid(ctx context.Context, id, user string, proto Protocol) error {
	id = auth.ASCIILower(id)
	mailbox, userErr := auth.ParseMailbox(user)
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var row verifyRow
	if validID(id) {
		var err error
		if row, err = s.lookup(ctx, id); err != nil {
			return err
		}
	}
	if kind, reason := s.judge(row, true, mailbox, userErr, proto); kind != nil {
		return &Refusal{Err: kind, Reason: reason, ID: id}
	}
	return nil
}
