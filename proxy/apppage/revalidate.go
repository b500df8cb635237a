package apppage

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

// RevalidationStore is what the Revalidator needs of the store
// (*apppass.Store).
type RevalidationStore interface {
	DueForRevalidation(ctx context.Context, before time.Time, limit int) ([]string, error)
	ClaimRevalidationRetry(ctx context.Context, user string, before time.Time, retry time.Duration) (apppass.Claim, error)
	Revalidated(ctx context.Context, c apppass.Claim, newToken string) error
	Refused(ctx context.Context, c apppass.Claim, reason string) error
}

// Results of one user's revalidation, as counted by Revalidator.Count.
const (
	RevalidationOK      = "ok"      // the provider still vouches for the user
	RevalidationRefused = "refused" // suspended: the provider refused
	RevalidationError   = "error"   // not decided (provider or store down): tried again at the next pass
)

// Revalidator asks the provider, every Interval per user, whether the
// users who made app passwords still may: it redeems each stored refresh
// token and checks the new access token like a mail login. A refusal
// (invalid_grant, or a token that no longer names the mailbox) suspends
// the user's app passwords until the user signs in on the page again.
// A provider that cannot be reached suspends nobody: the user is tried
// again at the next pass (a quarter of Interval, 1 s to 5 min later).
// Several replicas may run one each: a user's refresh is claimed by one
// (apppass.Store.ClaimRevalidationRetry).
type Revalidator struct {
	Store         RevalidationStore
	Provider      Provider
	Authenticator auth.Authenticator
	// Interval between two refreshes of a user's token. Required.
	Interval time.Duration
	Logger   *slog.Logger     // nil: slog.Default()
	Now      func() time.Time // nil: time.Now
	// Count, if set, is called once per user revalidated with a result.
	Count func(result string)
}

// Run revalidates until ctx ends, looking for due users every pass().
func (v *Revalidator) Run(ctx context.Context) {
	t := time.NewTicker(v.pass())
	defer t.Stop()
	for {
		v.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce revalidates every user due now and returns how many it decided.
// A pass ends early when the store fails or a whole batch decides
// nobody (so that a store that reads but cannot write is not asked again
// and again); the rest wait for the next pass.
func (v *Revalidator) RunOnce(ctx context.Context) int {
	before := v.now().Add(-v.Interval)
	n := 0
	for ctx.Err() == nil {
		users, err := v.Store.DueForRevalidation(ctx, before, apppass.DefaultDueLimit)
		if err != nil {
			v.log().Warn("app passwords: cannot list users due for revalidation", "err", err.Error())
			return n
		}
		decided := 0
		for _, u := range users {
			ok, err := v.one(ctx, u, before)
			if err != nil {
				return n + decided
			}
			if ok {
				decided++
			}
		}
		n += decided
		if len(users) < apppass.DefaultDueLimit || decided == 0 {
			return n
		}
	}
	return n
}

// one revalidates user unless another replica has; decided reports an
// outcome stored, err a store that could not be used (the pass ends).
func (v *Revalidator) one(ctx context.Context, user string, before time.Time) (decided bool, err error) {
	c, err := v.Store.ClaimRevalidationRetry(ctx, user, before, v.pass())
	switch {
	case errors.Is(err, apppass.ErrNotDue):
		return false, nil
	case errors.Is(err, apppass.ErrKey): // e.g. key_file replaced: the token is lost, the user must sign in again
		return v.report(user, v.Store.Refused(context.WithoutCancel(ctx), c, "the stored refresh token cannot be decrypted"), RevalidationRefused), nil
	case err != nil:
		v.result(user, RevalidationError, err)
		return false, err
	}
	newToken, err := v.refresh(ctx, c)
	// Once the provider has answered, its verdict is stored even if ctx
	// ends now: a rotated refresh token that is not stored is lost.
	stored := context.WithoutCancel(ctx)
	switch {
	case refused(err):
		return v.report(user, v.Store.Refused(stored, c, err.Error()), RevalidationRefused), nil
	case err == nil:
		return v.report(user, v.Store.Revalidated(stored, c, newToken), RevalidationOK), nil
	}
	v.result(user, RevalidationError, err)
	return false, nil
}

// refused reports whether err is the provider's refusal of the user, not
// a failure to ask it.
func refused(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, auth.ErrInvalidCredentials) && !errors.Is(err, auth.ErrUnavailable)
}

// report counts and logs the outcome of storing a verdict (storeErr nil)
// and reports whether it was stored; ErrNotDue means the user signed in
// meanwhile, and that sign-in wins.
func (v *Revalidator) report(user string, storeErr error, result string) bool {
	switch {
	case storeErr == nil:
		v.result(user, result, nil)
		return true
	case !errors.Is(storeErr, apppass.ErrNotDue):
		v.result(user, RevalidationError, storeErr)
	}
	return false
}

// refresh redeems c's token and checks that the new access token still
// names c.User; it returns the rotated refresh token ("" if none).
func (v *Revalidator) refresh(ctx context.Context, c apppass.Claim) (string, error) {
	t, err := v.Provider.Refresh(ctx, c.Token)
	if err != nil {
		return "", err
	}
	// User is the claim's: a token that now names another mailbox is refused.
	if _, err := v.Authenticator.Authenticate(ctx, auth.Credentials{Mechanism: "REVALIDATE", User: c.User, Token: t.Access}); err != nil {
		return "", err
	}
	return t.Refresh, nil
}

func (v *Revalidator) result(user, result string, err error) {
	if v.Count != nil {
		v.Count(result)
	}
	switch result {
	case RevalidationRefused:
		v.log().Info("app passwords: provider refused the user's refresh token; app passwords suspended until the user signs in again", "user", user)
	case RevalidationError:
		v.log().Warn("app passwords: cannot revalidate user; trying again later", "user", user, "err", err.Error())
	default:
		v.log().Debug("app passwords: user revalidated", "user", user)
	}
}

// pass is the time between two looks for due users, and the retry of a
// user the provider could not be asked about: a quarter of Interval,
// between 1 s and 5 min.
func (v *Revalidator) pass() time.Duration {
	return min(max(v.Interval/4, time.Second), 5*time.Minute)
}

func (v *Revalidator) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Revalidator) log() *slog.Logger {
	if v.Logger != nil {
		return v.Logger
	}
	return slog.Default()
}
