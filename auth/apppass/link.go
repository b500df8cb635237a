package apppass

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailgate/mailgate/auth"
)

const (
	// DefaultDueLimit is how many users DueForRevalidation returns when
	// its limit is not positive.
	DefaultDueLimit = 100
	// maxReasonLen bounds a stored suspension reason, in bytes.
	maxReasonLen = 200
)

// Link is the state of a user's provider link (never the token).
type Link struct {
	// User is the mailbox address.
	User string
	// KeyID names the key that sealed the refresh token.
	KeyID string
	// Linked is when the user last signed in and the token was stored.
	Linked time.Time
	// Revalidated is the last refresh the provider accepted (or Linked).
	Revalidated time.Time
	// Suspended is when the provider refused a refresh. Zero: not
	// suspended. While suspended, Verify refuses the user's app passwords
	// with ErrSuspended, until SetRefreshToken (a new sign-in).
	Suspended time.Time
	// Reason is why it was suspended, for the page and the log.
	Reason string
}

// SetRefreshToken links user to the provider: it stores the refresh token
// (offline access) of a sign-in, sealed with the keyring's primary key,
// counts the sign-in as a revalidation and lifts any suspension. The
// link's Linked time always moves forward (by a microsecond when the
// clock has not), so that a revalidation claimed before the sign-in no
// longer applies (see ClaimRevalidation).
func (s *Store) SetRefreshToken(ctx context.Context, user, refreshToken string) error {
	mailbox, err := s.linkArgs(user, refreshToken)
	if err != nil {
		return err
	}
	keyID, sealed := s.keys.seal(mailbox, refreshToken)
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	_, err = s.db.ExecContext(ctx, `INSERT INTO provider_links
			(username, key_id, refresh_token, linked_at, revalidated_at, suspended_at, suspend_reason)
		VALUES ($1, $2, $3, $4, $4, NULL, '')
		ON CONFLICT (username) DO UPDATE SET key_id = excluded.key_id, refresh_token = excluded.refresh_token,
			linked_at = CASE WHEN excluded.linked_at > provider_links.linked_at
				THEN excluded.linked_at ELSE provider_links.linked_at + 1 END,
			revalidated_at = excluded.revalidated_at,
			suspended_at = NULL, suspend_reason = ''`,
		mailbox, keyID, sealed, micros(s.now()))
	if err != nil {
		return unavailable("set refresh token", err)
	}
	return nil
}

// RefreshToken returns user's refresh token. ErrNoLink: none stored;
// ErrKey: it cannot be decrypted with the keyring.
func (s *Store) RefreshToken(ctx context.Context, user string) (string, error) {
	if s.keys == nil {
		return "", ErrNoKey
	}
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var keyID string
	var sealed []byte
	err = s.db.QueryRowContext(ctx, `SELECT key_id, refresh_token FROM provider_links WHERE username = $1`, mailbox).
		Scan(&keyID, &sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", fmt.Errorf("%w: %s", ErrNoLink, mailbox)
	case err != nil:
		return "", unavailable("refresh token", err)
	}
	return s.keys.open(mailbox, keyID, sealed)
}

// LinkStatus returns user's provider link. ErrNoLink: none.
func (s *Store) LinkStatus(ctx context.Context, user string) (Link, error) {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return Link{}, fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	l := Link{User: mailbox}
	var linked, revalidated int64
	var suspended sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT key_id, linked_at, revalidated_at, suspended_at, suspend_reason
		FROM provider_links WHERE username = $1`, mailbox).Scan(&l.KeyID, &linked, &revalidated, &suspended, &l.Reason)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Link{}, fmt.Errorf("%w: %s", ErrNoLink, mailbox)
	case err != nil:
		return Link{}, unavailable("link status", err)
	}
	l.Linked, l.Revalidated = timeOf(linked), timeOf(revalidated)
	l.Suspended = fromMicros(suspended)
	return l, nil
}

// DueForRevalidation returns up to limit (DefaultDueLimit if not
// positive) users whose link is not suspended and was last revalidated
// before before, least recently revalidated first. With several replicas,
// claim each one (ClaimRevalidation) before refreshing its token.
func (s *Store) DueForRevalidation(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if limit <= 0 {
		limit = DefaultDueLimit
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `SELECT username FROM provider_links
		WHERE suspended_at IS NULL AND revalidated_at < $1 ORDER BY revalidated_at, username LIMIT $2`,
		micros(before), limit)
	if err != nil {
		return nil, unavailable("due for revalidation", err)
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, unavailable("due for revalidation", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("due for revalidation", err)
	}
	return users, nil
}

// MarkRevalidated records that the provider accepted a refresh of user's
// token now, and stores newRefreshToken when the provider rotated it
// ("": keep the stored one). It does not lift a suspension. ErrNoLink:
// none stored. With several replicas, use ClaimRevalidation and
// Revalidated instead.
func (s *Store) MarkRevalidated(ctx context.Context, user, newRefreshToken string) error {
	mailbox, err := s.parseUser(user)
	if err != nil {
		return err
	}
	return s.revalidate(ctx, "mark revalidated", linkFilter{user: mailbox, none: ErrNoLink}, newRefreshToken)
}

// Suspend records that the provider refused to refresh user's token
// (reason says how, for the page and the log: no secrets): Verify
// refuses the user's app passwords with ErrSuspended until the user signs
// in again (SetRefreshToken). The first suspension's time and reason are
// kept. ErrNoLink: none stored. With several replicas, use
// ClaimRevalidation and Refused instead.
func (s *Store) Suspend(ctx context.Context, user, reason string) error {
	mailbox, err := s.parseUser(user)
	if err != nil {
		return err
	}
	return s.suspend(ctx, "suspend", linkFilter{user: mailbox, none: ErrNoLink}, reason)
}

// revalidate sets the revalidation time of the link f selects to now and
// stores newToken, unless it is "".
func (s *Store) revalidate(ctx context.Context, op string, f linkFilter, newToken string) error {
	if newToken == "" {
		return s.updateLink(ctx, op, f, `revalidated_at = $1`, micros(s.now()))
	}
	if s.keys == nil {
		return ErrNoKey
	}
	keyID, sealed := s.keys.seal(f.user, newToken)
	return s.updateLink(ctx, op, f, `revalidated_at = $1, key_id = $2, refresh_token = $3`, micros(s.now()), keyID, sealed)
}

// suspend suspends the link f selects, keeping an earlier suspension's
// time and reason.
func (s *Store) suspend(ctx context.Context, op string, f linkFilter, reason string) error {
	return s.updateLink(ctx, op, f, `suspend_reason = CASE WHEN suspended_at IS NULL THEN $2 ELSE suspend_reason END,
		suspended_at = COALESCE(suspended_at, $1)`, micros(s.now()), clipReason(reason))
}

// Rekey re-seals with the primary key every refresh token sealed with
// another key of the keyring, after a rotation, and returns how many. A
// token that does not open is left as it is and reported (ErrKey);
// retire an old key only once Rekey succeeds.
func (s *Store) Rekey(ctx context.Context) (int, error) {
	if s.keys == nil {
		return 0, ErrNoKey
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	type old struct {
		user, keyID string
		sealed      []byte
	}
	rows, err := s.db.QueryContext(ctx, `SELECT username, key_id, refresh_token FROM provider_links WHERE key_id <> $1`,
		s.keys.PrimaryID())
	if err != nil {
		return 0, unavailable("rekey", err)
	}
	var olds []old
	for rows.Next() {
		var o old
		if err := rows.Scan(&o.user, &o.keyID, &o.sealed); err != nil {
			rows.Close()
			return 0, unavailable("rekey", err)
		}
		olds = append(olds, o)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, unavailable("rekey", err)
	}
	n, errs := 0, []error(nil)
	for _, o := range olds {
		token, err := s.keys.open(o.user, o.keyID, o.sealed)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.user, err))
			continue
		}
		keyID, sealed := s.keys.seal(o.user, token)
		// Only if unchanged meanwhile (a sign-in may have stored a new token).
		res, err := s.db.ExecContext(ctx, `UPDATE provider_links SET key_id = $1, refresh_token = $2
			WHERE username = $3 AND key_id = $4`, keyID, sealed, o.user, o.keyID)
		if err != nil {
			return n, unavailable("rekey", err)
		}
		if k, _ := res.RowsAffected(); k > 0 {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// linkArgs checks the arguments of an operation that seals a token.
func (s *Store) linkArgs(user, refreshToken string) (string, error) {
	if s.keys == nil {
		return "", ErrNoKey
	}
	if refreshToken == "" {
		return "", errors.New("apppass: empty refresh token")
	}
	return s.parseUser(user)
}

// parseUser is auth.ParseMailbox with ErrBadUser.
func (s *Store) parseUser(user string) (string, error) {
	mailbox, err := auth.ParseMailbox(user)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadUser, err)
	}
	return mailbox, nil
}

// linkFilter selects the link an update applies to.
type linkFilter struct {
	user   string    // the mailbox address
	linked time.Time // not zero: only while linked_at is still this (a claim's sign-in)
	none   error     // the error when nothing matches: ErrNoLink, or ErrNotDue for a claim
}

// updateLink sets the columns of set (with $1... its args) in the link f
// selects; no such link is f.none.
func (s *Store) updateLink(ctx context.Context, op string, f linkFilter, set string, args ...any) error {
	args = append(args, f.user)
	query := fmt.Sprintf(`UPDATE provider_links SET %s WHERE username = $%d`, set, len(args))
	if !f.linked.IsZero() {
		args = append(args, micros(f.linked))
		query += fmt.Sprintf(` AND linked_at = $%d`, len(args))
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	n, err := s.exec(ctx, op, query, args...)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %s", f.none, f.user)
	}
	return nil
}

// clipReason bounds a suspension reason to maxReasonLen bytes of valid
// UTF-8 on one line.
func clipReason(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	for len(s) > maxReasonLen {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
