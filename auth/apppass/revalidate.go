package apppass

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Claim is one replica's right to refresh a user's token now (see
// ClaimRevalidation).
type Claim struct {
	// User is the mailbox address.
	User string
	// Token is the refresh token, decrypted ("" with ErrKey).
	Token string
	// Linked is the link's sign-in time (Link.Linked) when claimed:
	// Revalidated and Refused apply only while it is unchanged.
	Linked time.Time
}

// ClaimRevalidation claims the refresh of user's token for this caller:
// in one conditional UPDATE it moves the link's revalidation time to now
// if the link is not suspended and was last revalidated before before
// (taken as now if later), so that of several replicas claiming at once
// exactly one wins and the others get ErrNotDue. The winner refreshes
// Claim.Token at the provider and reports with Revalidated or Refused. If
// it reports nothing (the provider could not be reached), the claim
// lapses: the user is due again when before passes the claim's time.
//
// ErrNotDue: the link is suspended, not due, or was just claimed by
// another replica; ErrNoLink: no link; ErrNoKey: no keyring; ErrKey: the
// token does not decrypt, and then the claim is still taken and returned
// without its Token, so that the caller may Refused it (the user must
// sign in again).
func (s *Store) ClaimRevalidation(ctx context.Context, user string, before time.Time) (Claim, error) {
	return s.claim(ctx, user, before, 0)
}

// ClaimRevalidationRetry is ClaimRevalidation whose claim, if never
// reported (the provider could not be reached, the replica died), lapses
// after retry rather than after a whole interval: it stores before+retry
// (at most now) as the revalidation time, so the user is due again once
// the caller's before has moved retry further. retry must be at least 1µs.
func (s *Store) ClaimRevalidationRetry(ctx context.Context, user string, before time.Time, retry time.Duration) (Claim, error) {
	if retry < time.Microsecond { // the store's resolution: a shorter one would let a second caller win
		return Claim{}, errors.New("apppass: retry must be at least 1µs")
	}
	return s.claim(ctx, user, before, retry)
}

// claim is ClaimRevalidation(Retry); retry 0: the claim stores now.
func (s *Store) claim(ctx context.Context, user string, before time.Time, retry time.Duration) (Claim, error) {
	if s.keys == nil {
		return Claim{}, ErrNoKey
	}
	mailbox, err := s.parseUser(user)
	if err != nil {
		return Claim{}, err
	}
	now := s.now()
	if before.After(now) { // else the winner's new time would still be due, and a second caller would win too
		before = now
	}
	stored := now
	if retry > 0 && before.Add(retry).Before(now) {
		stored = before.Add(retry) // after before: a second caller still loses
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var keyID string
	var sealed []byte
	var linked int64
	err = s.db.QueryRowContext(ctx, `UPDATE provider_links SET revalidated_at = $1
		WHERE username = $2 AND suspended_at IS NULL AND revalidated_at < $3
		RETURNING key_id, refresh_token, linked_at`, micros(stored), mailbox, micros(before)).Scan(&keyID, &sealed, &linked)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Claim{}, s.notClaimed(ctx, mailbox)
	case err != nil:
		return Claim{}, unavailable("claim revalidation", err)
	}
	c := Claim{User: mailbox, Linked: timeOf(linked)}
	c.Token, err = s.keys.open(mailbox, keyID, sealed)
	return c, err
}

// notClaimed says why user's link could not be claimed: ErrNoLink or
// ErrNotDue.
func (s *Store) notClaimed(ctx context.Context, user string) error {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM provider_links WHERE username = $1`, user).Scan(&n)
	switch {
	case err != nil:
		return unavailable("claim revalidation", err)
	case n == 0:
		return fmt.Errorf("%w: %s", ErrNoLink, user)
	}
	return fmt.Errorf("%w: %s", ErrNotDue, user)
}

// Revalidated records that the provider accepted the refresh of claim c
// now, and stores newToken when the provider rotated it ("": keep the
// stored one). It does not lift a suspension. ErrNotDue: the link changed
// since the claim (a new sign-in, whose token wins) or is gone.
func (s *Store) Revalidated(ctx context.Context, c Claim, newToken string) error {
	f, err := s.claimFilter(c)
	if err != nil {
		return err
	}
	return s.revalidate(ctx, "revalidated", f, newToken)
}

// Refused suspends the link of claim c, whose refresh the provider
// refused, like Suspend (reason says how, for the page and the log: no
// secrets). ErrNotDue: the link changed since the claim (a new sign-in,
// which stays unsuspended) or is gone.
func (s *Store) Refused(ctx context.Context, c Claim, reason string) error {
	f, err := s.claimFilter(c)
	if err != nil {
		return err
	}
	return s.suspend(ctx, "refused", f, reason)
}

// claimFilter selects the link of c while its sign-in is the claimed one.
func (s *Store) claimFilter(c Claim) (linkFilter, error) {
	mailbox, err := s.parseUser(c.User)
	if err != nil {
		return linkFilter{}, err
	}
	if c.Linked.IsZero() {
		return linkFilter{}, fmt.Errorf("%w: not a claim", ErrNotDue)
	}
	return linkFilter{user: mailbox, linked: c.Linked, none: ErrNotDue}, nil
}
