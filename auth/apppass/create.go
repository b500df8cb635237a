package apppass

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// Create makes an app password for user (a mailbox address) named name,
// for protocols (none: all that the policy allows), expiring after expiry
// (zero: the policy's default). It returns the password, to be shown
// once and never again (only its hash is stored), and its record.
//
// It fails with ErrBadUser, ErrBadName, ErrNotAllowed (a protocol or
// expiry outside the policy), ErrTooMany (Policy.MaxPerUser usable
// passwords already), or a store error wrapping auth.ErrUnavailable.
func (s *Store) Create(ctx context.Context, user, name string, protocols []Protocol, expiry time.Duration) (string, Record, error) {
	rec, err := s.newRecord(user, name, protocols, expiry)
	if err != nil {
		return "", Record{}, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	pw := newPassword()
	rec.ID = pw.id
	var encoded string
	if err := s.withHash(ctx, func() (err error) {
		encoded, err = s.hasher.Hash([]byte(pw.value))
		return err
	}); err != nil {
		return "", Record{}, fmt.Errorf("apppass: create: %w", err)
	}
	err = s.inTx(ctx, "create", rec.User, func(tx *sql.Tx) error {
		if err := s.checkCount(ctx, tx, rec.User, rec.Created); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO app_passwords
			(id, username, name, hash, protocols, created_at, expires_at, last_used_ip)
			VALUES ($1, $2, $3, $4, $5, $6, $7, '')`,
			rec.ID, rec.User, rec.Name, encoded, joinProtocols(rec.Protocols), micros(rec.Created), nullMicros(rec.Expires))
		if err != nil {
			return unavailable("create", err)
		}
		return nil
	})
	if err != nil {
		return "", Record{}, err
	}
	return pw.value, rec, nil
}

// newRecord checks a request against the policy and returns the record
// it makes, without an id.
func (s *Store) newRecord(user, name string, protocols []Protocol, expiry time.Duration) (Record, error) {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	if err := checkName(name); err != nil {
		return Record{}, err
	}
	scope, err := s.policy.scope(protocols)
	if err != nil {
		return Record{}, err
	}
	if len(scope) == 0 {
		return Record{}, fmt.Errorf("%w: the policy allows no protocol", ErrNotAllowed)
	}
	life, err := s.policy.lifetime(expiry)
	if err != nil {
		return Record{}, err
	}
	now := s.storedNow()
	rec := Record{User: mailbox, Name: name, Protocols: scope, Created: now}
	if life > 0 {
		rec.Expires = now.Add(life)
	}
	return rec, nil
}

// checkCount fails with ErrTooMany when user already has the maximum of
// usable passwords at now.
func (s *Store) checkCount(ctx context.Context, tx *sql.Tx, user string, now time.Time) error {
	limit := s.policy.maxPerUser()
	if limit == 0 {
		return nil
	}
	var n int
	err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM app_passwords
		WHERE username = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`,
		user, micros(now)).Scan(&n)
	if err != nil {
		return unavailable("create", err)
	}
	if n >= limit {
		return fmt.Errorf("%w: %d of %d", ErrTooMany, n, limit)
	}
	return nil
}
