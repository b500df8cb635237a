package apppass

import (
	"context"
	"fmt"
	"time"

	"github.com/mailgate/mailgate/auth"
)

// List returns user's unrevoked app passwords, expired ones included
// (Record.Expired), oldest first.
func (s *Store) List(ctx context.Context, user string) ([]Record, error) {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM app_passwords p
		WHERE p.username = $1 AND p.revoked_at IS NULL ORDER BY p.created_at, p.id`, mailbox)
	if err != nil {
		return nil, unavailable("list", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var r Record
		dest, finish := scanRecord(&r)
		if err := rows.Scan(dest...); err != nil {
			return nil, unavailable("list", err)
		}
		finish()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list", err)
	}
	return out, nil
}

// Revoke revokes user's app password id at once: the next login with it
// fails. ErrNotFound: user has no such unrevoked password.
func (s *Store) Revoke(ctx context.Context, user, id string) error {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	id = auth.ASCIILower(id)
	if !validID(id) {
		return fmt.Errorf("%w: malformed id", ErrNotFound)
	}
	n, err := s.revoke(ctx, "revoke", `AND id = $3`, mailbox, id)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil
}

// RevokeAll revokes all of user's app passwords and returns how many.
func (s *Store) RevokeAll(ctx context.Context, user string) (int, error) {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	return s.revoke(ctx, "revoke all", "", mailbox)
}

// revoke marks user's unrevoked passwords matching the extra condition
// (with $3... its args) revoked and drops their hashes.
func (s *Store) revoke(ctx context.Context, op, cond, user string, args ...any) (int, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	return s.exec(ctx, op, `UPDATE app_passwords SET revoked_at = $1, hash = ''
		WHERE username = $2 AND revoked_at IS NULL `+cond, append([]any{micros(s.now()), user}, args...)...)
}

// Purge deletes the rows of app passwords revoked or expired before
// before (revoked rows are kept until then so that a login with a revoked
// password is logged as such) and returns how many: it counts app
// passwords only. It also deletes the page's sessions and sign-ins that
// have expired by now, whatever before (an expired one is never used nor
// logged again); those are not counted.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	n, err := s.exec(ctx, "purge", `DELETE FROM app_passwords WHERE revoked_at < $1 OR expires_at < $1`, micros(before))
	if err != nil {
		return 0, err
	}
	if err := s.purgeWeb(ctx, s.now()); err != nil {
		return n, err
	}
	return n, nil
}
