package apppass

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// tokenBytes is the randomness of a session id, a CSRF token, a sign-in
// state and a PKCE code verifier: 256 bits, 43 characters of base64url.
const tokenBytes = 32

// tokenEncoding is base64url without padding, strict, so that a token has
// exactly one text (and one hash).
var tokenEncoding = base64.RawURLEncoding.Strict()

// Session is a signed-in session of the page.
type Session struct {
	// User is the mailbox address, lower case.
	User string
	// CSRF is the session's anti-CSRF token for the page's forms (256
	// random bits, base64url). Check a form's with ValidCSRF.
	CSRF string
	// Created is when the user signed in.
	Created time.Time
	// Expires is when the session ends.
	Expires time.Time
}

// ValidCSRF reports whether token is the session's CSRF token, in
// constant time.
func (se Session) ValidCSRF(token string) bool {
	return se.CSRF != "" && subtle.ConstantTimeCompare([]byte(token), []byte(se.CSRF)) == 1
}

// SignIn is an authorization request under way (OAuth 2.0 authorization
// code with PKCE, RFC 7636).
type SignIn struct {
	// State goes in the authorization request and in the browser's cookie
	// (256 random bits, base64url); only its SHA-256 is stored.
	State string
	// Verifier is the PKCE code verifier (256 random bits, base64url: 43
	// characters of the unreserved set), stored until TakeSignIn.
	Verifier string
	// Expires is when the sign-in must have completed.
	Expires time.Time
}

// CreateSession starts a session of user (a mailbox address) lasting ttl
// (positive), and returns its id, for the cookie (256 random bits,
// base64url; only its SHA-256 is stored), and the session. It also
// deletes the user's expired sessions.
func (s *Store) CreateSession(ctx context.Context, user string, ttl time.Duration) (string, Session, error) {
	mailbox, err := s.parseUser(user)
	if err != nil {
		return "", Session{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return "", Session{}, err
	}
	id, idHash := newToken()
	csrf, _ := newToken()
	now := s.storedNow()
	se := Session{User: mailbox, CSRF: csrf, Created: now, Expires: now.Add(ttl)}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.exec(ctx, "create session", `DELETE FROM web_sessions WHERE username = $1 AND expires_at <= $2`,
		mailbox, micros(now)); err != nil {
		return "", Session{}, err
	}
	if _, err := s.exec(ctx, "create session", `INSERT INTO web_sessions (id_hash, username, csrf, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, idHash, mailbox, csrf, micros(now), micros(se.Expires)); err != nil {
		return "", Session{}, err
	}
	return id, se, nil
}

// Session returns the unexpired session with id. ErrNoSession: unknown,
// expired, ended or malformed (a malformed id never reaches the database).
func (s *Store) Session(ctx context.Context, id string) (Session, error) {
	idHash, ok := tokenHash(id)
	if !ok {
		return Session{}, fmt.Errorf("%w: malformed id", ErrNoSession)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var se Session
	var created, expires int64
	err := s.db.QueryRowContext(ctx, `SELECT username, csrf, created_at, expires_at FROM web_sessions
		WHERE id_hash = $1 AND expires_at > $2`, idHash, micros(s.now())).Scan(&se.User, &se.CSRF, &created, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Session{}, ErrNoSession
	case err != nil:
		return Session{}, unavailable("session", err)
	}
	se.Created, se.Expires = timeOf(created), timeOf(expires)
	return se, nil
}

// EndSession deletes the session with id (sign-out). An unknown or
// malformed id is not an error: there is nothing to end.
func (s *Store) EndSession(ctx context.Context, id string) error {
	idHash, ok := tokenHash(id)
	if !ok {
		return nil
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	_, err := s.exec(ctx, "end session", `DELETE FROM web_sessions WHERE id_hash = $1`, idHash)
	return err
}

// EndSessions deletes all of user's sessions (sign-out everywhere) and
// returns how many unexpired ones it ended.
func (s *Store) EndSessions(ctx context.Context, user string) (int, error) {
	mailbox, err := s.parseUser(user)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.exec(ctx, "end sessions", `DELETE FROM web_sessions WHERE username = $1 AND expires_at <= $2`,
		mailbox, micros(s.now())); err != nil {
		return 0, err
	}
	return s.exec(ctx, "end sessions", `DELETE FROM web_sessions WHERE username = $1`, mailbox)
}

// BeginSignIn records a new sign-in that must complete within ttl
// (positive), and returns it. It also deletes the expired sign-ins.
func (s *Store) BeginSignIn(ctx context.Context, ttl time.Duration) (SignIn, error) {
	if err := checkTTL(ttl); err != nil {
		return SignIn{}, err
	}
	state, stateHash := newToken()
	verifier, _ := newToken()
	now := s.storedNow()
	in := SignIn{State: state, Verifier: verifier, Expires: now.Add(ttl)}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if _, err := s.exec(ctx, "begin sign-in", `DELETE FROM web_signins WHERE expires_at <= $1`, micros(now)); err != nil {
		return SignIn{}, err
	}
	if _, err := s.exec(ctx, "begin sign-in", `INSERT INTO web_signins (state_hash, verifier, expires_at) VALUES ($1, $2, $3)`,
		stateHash, verifier, micros(in.Expires)); err != nil {
		return SignIn{}, err
	}
	return in, nil
}

// TakeSignIn returns the code verifier of the unexpired sign-in with
// state and deletes it, in one statement, so that a state works once even
// when two requests bring it at the same time. ErrNoSession: unknown,
// expired, already taken or malformed.
func (s *Store) TakeSignIn(ctx context.Context, state string) (string, error) {
	stateHash, ok := tokenHash(state)
	if !ok {
		return "", fmt.Errorf("%w: malformed state", ErrNoSession)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var verifier string
	var expires int64
	err := s.db.QueryRowContext(ctx, `DELETE FROM web_signins WHERE state_hash = $1 RETURNING verifier, expires_at`,
		stateHash).Scan(&verifier, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrNoSession
	case err != nil:
		return "", unavailable("take sign-in", err)
	case expires <= micros(s.now()):
		return "", fmt.Errorf("%w: sign-in expired", ErrNoSession)
	}
	return verifier, nil
}

// purgeWeb deletes the sessions and sign-ins expired at now.
func (s *Store) purgeWeb(ctx context.Context, now time.Time) error {
	if _, err := s.exec(ctx, "purge", `DELETE FROM web_sessions WHERE expires_at <= $1`, micros(now)); err != nil {
		return err
	}
	_, err := s.exec(ctx, "purge", `DELETE FROM web_signins WHERE expires_at <= $1`, micros(now))
	return err
}

// newToken returns a random token's text and the SHA-256 that stands for
// it in the database.
func newToken() (text string, hash []byte) {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // never fails
	sum := sha256.Sum256(b)
	return tokenEncoding.EncodeToString(b), sum[:]
}

// tokenHash returns the SHA-256 of the token text, or false when text is
// not a token's.
func tokenHash(text string) ([]byte, bool) {
	if len(text) != tokenEncoding.EncodedLen(tokenBytes) {
		return nil, false
	}
	b, err := tokenEncoding.DecodeString(text)
	if err != nil || len(b) != tokenBytes {
		return nil, false
	}
	sum := sha256.Sum256(b)
	return sum[:], true
}

// checkTTL refuses a lifetime that is not positive.
func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("apppass: lifetime %v is not positive", ttl)
	}
	return nil
}
