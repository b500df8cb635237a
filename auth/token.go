package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// TokenAuthenticator authenticates OAuth credentials (Credentials.Token):
// it validates the token, derives the mailbox with Policy, and checks that
// the user the client claimed, if any, is that mailbox. Expiry of the token
// is the Validator's job; the "exp" claim only fills Identity.Expiry (for a
// userinfo answer without "exp", the unverified "exp" of the token itself
// when it is a JWT that the provider accepted).
type TokenAuthenticator struct {
	// Validator checks the token with the provider. Required.
	Validator Validator
	// Policy maps claims to a mailbox. The zero Policy uses "email".
	Policy Policy
	// Logger receives the reason for each refusal. Nil: slog.Default().
	Logger *slog.Logger
	// Source names the validator in Identity.Source ("userinfo", ...) when
	// the Validator does not name itself (this package's validators do,
	// per token, through a SourceFor(token string) string method).
	Source string
}

var _ Authenticator = TokenAuthenticator{}

// Authenticate implements Authenticator. Errors wrap ErrInvalidCredentials
// or ErrUnavailable; neither they nor the log lines contain the token.
func (a TokenAuthenticator) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	user := c.User
	if c.Token != "" && strings.Contains(user, c.Token) {
		user = "[withheld: contains the token]"
	}
	if c.ConnID != "" {
		log = log.With("conn", c.ConnID)
	}
	log = log.With("mech", c.Mechanism, "user", user, "remote", c.RemoteAddr)
	if c.Token == "" {
		err := fmt.Errorf("%w: empty token", ErrInvalidCredentials)
		log.InfoContext(ctx, "auth: token refused", "reason", err.Error())
		return Identity{}, err
	}
	if a.Validator == nil {
		err := fmt.Errorf("%w: no token validator configured", ErrUnavailable)
		log.ErrorContext(ctx, "auth: cannot validate token", "err", err.Error())
		return Identity{}, err
	}

	claims, err := a.Validator.Validate(ctx, c.Token)
	if err != nil {
		err = scrub(err, c.Token)
		if errors.Is(err, ErrInvalidCredentials) {
			log.InfoContext(ctx, "auth: token refused", "reason", err.Error())
		} else {
			log.WarnContext(ctx, "auth: cannot validate token", "err", err.Error())
		}
		return Identity{}, err
	}
	mailbox, err := a.Policy.Mailbox(claims)
	if err != nil {
		log.InfoContext(ctx, "auth: token refused", "reason", err.Error())
		return Identity{}, err
	}
	if err := checkClaimedUser(c.User, mailbox); err != nil {
		log.InfoContext(ctx, "auth: token refused", "reason", err.Error(), "token_user", mailbox)
		return Identity{}, err
	}
	id := Identity{User: mailbox, Mechanism: c.Mechanism, Source: a.Source}
	if src := sourceOf(a.Validator, c.Token); src != "" {
		id.Source = src
	}
	id.Expiry = tokenExpiry(claims, c.Token)
	log.DebugContext(ctx, "auth: token accepted", "mailbox", mailbox, "source", id.Source)
	return id, nil
}

// checkClaimedUser checks the user name the client claimed (XOAUTH2 user=,
// OAUTHBEARER a=; empty: none) against the mailbox the token proves. The
// name is taken as strictly as the claim (ParseMailbox: no trimming, no
// invisible characters) and must equal the mailbox but for ASCII case.
func checkClaimedUser(claimed, mailbox string) error {
	if claimed == "" {
		return nil
	}
	if why := mailboxProblem(claimed); why != "" {
		return fmt.Errorf("%w: the claimed user name %s", ErrInvalidCredentials, why)
	}
	if !sameMailbox(claimed, mailbox) {
		return fmt.Errorf("%w: token belongs to another user", ErrInvalidCredentials)
	}
	return nil
}

// scrub makes sure a validator error does not carry the token: if its text
// contains the token it is replaced by an error keeping only the sentinel.
// Errors wrapping neither sentinel are classed as ErrUnavailable (fail closed).
func scrub(err error, token string) error {
	kind := ErrUnavailable
	if errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrUnavailable) {
		kind = ErrInvalidCredentials
	}
	if strings.Contains(err.Error(), token) {
		return fmt.Errorf("%w: validator error (text withheld: it contained the token)", kind)
	}
	if !errors.Is(err, ErrInvalidCredentials) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// tokenExpiry is the claims' "exp", or else the "exp" read without
// verification from token when it is a JWT (userinfo answers rarely carry
// "exp", but the provider has just accepted the token, so its own "exp" is
// good enough to bound a session or a cache entry). Zero if unknown.
func tokenExpiry(c Claims, token string) time.Time {
	if exp, ok := c.Time("exp"); ok {
		return exp
	}
	if looksLikeJWT(token) {
		if t, err := parseJWT(token); err == nil {
			if exp, ok := t.Claims.Time("exp"); ok {
				return exp
			}
		}
	}
	return time.Time{}
}
