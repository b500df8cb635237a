package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Key-set timing defaults (see JWTOptions).
const (
	// DefaultJWKSRefresh is how old the cached key set may get before a
	// validation refreshes it in the background.
	DefaultJWKSRefresh = 15 * time.Minute
	// DefaultJWKSRefetch is the least time between two fetches caused by
	// tokens signed with an unknown key id.
	DefaultJWKSRefetch = 30 * time.Second
	// jwksRetryAfterFailure is the least time between fetch attempts while
	// the provider keeps failing.
	jwksRetryAfterFailure = 2 * time.Second
	// maxJWKSBody caps discovery and JWKS documents.
	maxJWKSBody = 512 << 10
	// minRSABits is the smallest RSA key accepted for signatures.
	minRSABits = 2048
)

// errUnknownKey is a signing key that the issuer does not publish.
var errUnknownKey = errors.New("unknown signing key")

// keySet is the issuer's JWKS, found through OIDC discovery (or a fixed
// jwks_uri) and cached. One fetch runs at a time; concurrent callers that
// need it wait for it. Fetches run detached from the caller's context,
// bounded by timeout, so a caller that goes away does not fail the others.
type keySet struct {
	issuer  string
	fixed   string // configured jwks_uri; "" = discover
	client  *http.Client
	timeout time.Duration
	refresh time.Duration
	refetch time.Duration
	now     func() time.Time
	log     *slog.Logger

	mu           sync.Mutex
	keys         []jose.JSONWebKey // public signature keys
	fetchedAt    time.Time         // last successful fetch; zero: never
	lastAttempt  time.Time         // start of the last fetch attempt
	lastKidFetch time.Time         // start of the last unknown-kid fetch
	lastErr      error             // result of the last attempt
	jwksURL      string            // from discovery; "" = discover next time
	inflight     chan struct{}     // closed when the running fetch ends
	bgPending    bool              // a background refresh was started
}

// lookupResult is the outcome of a key lookup.
type lookupResult struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
}

// fetchReason says why the key set is fetched; it decides the rate limit.
type fetchReason int

const (
	fetchNeeded     fetchReason = iota // no keys yet, or Refresh
	fetchBackground                    // the keys are older than refresh
	fetchUnknownKid                    // a token names a kid not in the set
)

// errRateLimited: an unknown-kid refetch was refused by the rate limit.
var errRateLimited = errors.New("jwks fetch rate-limited")

// lookup returns the keys that may have signed a token with this kid and
// alg. It fetches the key set when it was never fetched, refreshes it in the
// background when it is stale, and refetches it at once (at most once per
// refetch interval, whoever asks) when kid is unknown.
//
// Errors: errUnknownKey when kid is not published: the set fetched now, or
// successfully since the last unknown-kid refetch (so at most refetch ago),
// does not hold it. The caller refuses the token as invalid credentials,
// which the throttle counts and the cache remembers, so a stream of forged
// kids costs the provider at most one JWKS request per refetch interval.
// ErrUnavailable wrapped when the keys cannot be had: no key set, a fetch
// that fails, or kid unknown while the last refetch failed and another is
// rate-limited. A key that a provider starts signing with less than
// refetch after an unknown-kid refetch is refused until the next one.
func (s *keySet) lookup(ctx context.Context, kid, alg string, issuedAt time.Time) (lookupResult, error) {
	s.mu.Lock()
	never := s.fetchedAt.IsZero()
	s.mu.Unlock()
	if never {
		if err := s.fetch(ctx, fetchNeeded); err != nil {
			return lookupResult{}, err
		}
	}

	s.mu.Lock()
	keys, fetchedAt := matchKeys(s.keys, kid, alg), s.fetchedAt
	now := s.now()
	stale := len(keys) > 0 && now.Sub(fetchedAt) >= s.refresh && s.inflight == nil && !s.bgPending
	if stale {
		s.bgPending = true
	}
	s.mu.Unlock()
	if len(keys) > 0 {
		if stale {
			// Background refresh: this validation goes on with the cached
			// keys; a failed refresh keeps them.
			go func() {
				_ = s.fetch(context.WithoutCancel(ctx), fetchBackground)
				s.mu.Lock()
				s.bgPending = false
				s.mu.Unlock()
			}()
		}
		return lookupResult{keys: keys, fetchedAt: fetchedAt}, nil
	}

	// Unknown kid: maybe the provider rotated its keys.
	err := s.fetch(ctx, fetchUnknownKid)
	s.mu.Lock()
	keys, fetchedAt = matchKeys(s.keys, kid, alg), s.fetchedAt
	lastKidFetch := s.lastKidFetch
	next := lastKidFetch.Add(s.refetch)
	s.mu.Unlock()
	switch {
	case len(keys) > 0:
		return lookupResult{keys: keys, fetchedAt: fetchedAt}, nil
	case errors.Is(err, errRateLimited):
		if !fetchedAt.Before(lastKidFetch) || (!issuedAt.IsZero() && issuedAt.Before(fetchedAt)) {
			// The set was fetched successfully since the last
			// unknown-kid refetch (within the refetch interval), or after
			// the token was issued, and does not hold its key.
			return lookupResult{fetchedAt: fetchedAt}, errUnknownKey
		}
		// That refetch failed: the cached set may be out of date.
		return lookupResult{fetchedAt: fetchedAt}, fmt.Errorf(
			"%w: jwt: signing key %q is not in the cached JWKS, the last refetch failed, and refetching is rate-limited (next in %s)",
			ErrUnavailable, kid, next.Sub(now).Round(time.Second))
	case err != nil:
		return lookupResult{}, err
	default:
		return lookupResult{fetchedAt: fetchedAt}, errUnknownKey
	}
}

// fetch refreshes the key set, or waits for the fetch already running and
// returns its result. After a failure it does not try again for
// jwksRetryAfterFailure (it returns that failure); an unknown-kid fetch
// is allowed once per refetch interval (else errRateLimited). A failed
// fetch keeps the previous keys.
func (s *keySet) fetch(ctx context.Context, why fetchReason) error {
	s.mu.Lock()
	if ch := s.inflight; ch != nil {
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: jwt: waiting for the JWKS: %w", ErrUnavailable, ctx.Err())
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lastErr
	}
	now := s.now()
	if s.lastErr != nil && now.Sub(s.lastAttempt) < jwksRetryAfterFailure {
		err := s.lastErr
		s.mu.Unlock()
		return err
	}
	if why == fetchUnknownKid {
		if !s.lastKidFetch.IsZero() && now.Sub(s.lastKidFetch) < s.refetch {
			s.mu.Unlock()
			return errRateLimited
		}
		s.lastKidFetch = now
	}
	ch := make(chan struct{})
	s.inflight, s.lastAttempt = ch, now
	jwksURL := s.jwksURL
	s.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	keys, discovered, err := s.download(fctx, jwksURL)
	cancel()

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.jwksURL = "" // discover again next time
		s.lastErr = err
		if !s.fetchedAt.IsZero() {
			s.log.Warn("auth: JWKS refresh failed; keeping the cached keys", "err", err.Error())
		}
	} else {
		s.keys, s.fetchedAt, s.jwksURL, s.lastErr = keys, s.now(), discovered, nil
	}
	s.inflight = nil
	close(ch)
	return err
}

// download runs discovery (unless jwksURL is known or fixed) and fetches
// the JWKS. It returns the usable keys and the jwks_uri used.
func (s *keySet) download(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, string, error) {
	if s.fixed != "" {
		jwksURL = s.fixed
	}
	if jwksURL == "" {
		var err error
		if jwksURL, err = s.discover(ctx); err != nil {
			return nil, "", err
		}
	}
	body, err := s.get(ctx, jwksURL, "JWKS")
	if err != nil {
		return nil, "", err
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, "", fmt.Errorf("%w: jwt: JWKS at %s is not valid JSON: %w", ErrUnavailable, jwksURL, err)
	}
	var keys []jose.JSONWebKey
	for i, r := range raw.Keys {
		k, why := signatureKey(r)
		if why != "" {
			s.log.Debug("auth: JWKS key skipped", "index", i, "kid", k.KeyID, "reason", why)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("%w: jwt: JWKS at %s has no usable signature key", ErrUnavailable, jwksURL)
	}
	return keys, jwksURL, nil
}

// discover reads the issuer's OpenID configuration (OpenID Connect
// Discovery 1.0 §4) and returns its jwks_uri. The document's issuer must be
// exactly the configured one.
func (s *keySet) discover(ctx context.Context) (string, error) {
	m, err := FetchMetadata(ctx, s.client, s.issuer)
	if err != nil {
		if errors.Is(err, errIssuerMismatch) {
			s.log.Error("auth: OIDC discovery issuer mismatch: check oauth2.issuer", "err", err.Error())
		}
		return "", fmt.Errorf("jwt: %w", err)
	}
	if m.JWKSURI == "" {
		return "", fmt.Errorf("%w: jwt: discovery at %s has no jwks_uri", ErrUnavailable, DiscoveryURL(s.issuer))
	}
	return m.JWKSURI, nil
}

// DiscoveryURL returns the OpenID configuration URL of issuer:
// issuer without its trailing slash + "/.well-known/openid-configuration".
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

func (s *keySet) get(ctx context.Context, url, what string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: %s: %w", ErrUnavailable, what, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: %s: %w", ErrUnavailable, what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: jwt: %s at %s: HTTP %d", ErrUnavailable, what, url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: %s: reading body: %w", ErrUnavailable, what, err)
	}
	if len(body) > maxJWKSBody {
		return nil, fmt.Errorf("%w: jwt: %s at %s: larger than %d bytes", ErrUnavailable, what, url, maxJWKSBody)
	}
	return body, nil
}

// signatureKey parses one JWK and keeps it only if it is a public
// asymmetric signature key: not "use":"enc", not symmetric, RSA of at least
// 2048 bits, EC on P-256/384/521, or Ed25519. Private parts are dropped.
func signatureKey(raw json.RawMessage) (jose.JSONWebKey, string) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		var hdr struct {
			Kid string `json:"kid"`
		}
		_ = json.Unmarshal(raw, &hdr)
		k.KeyID = hdr.Kid
		return k, "unsupported or invalid key: " + err.Error()
	}
	if k.Use != "" && k.Use != "sig" {
		return k, "use is " + k.Use
	}
	k = k.Public()
	switch pk := k.Key.(type) {
	case *rsa.PublicKey:
		if pk.N.BitLen() < minRSABits {
			return k, fmt.Sprintf("RSA key of %d bits", pk.N.BitLen())
		}
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return k, "unsupported curve"
		}
	case ed25519.PublicKey:
	default:
		return k, fmt.Sprintf("not an asymmetric public key (%T)", k.Key)
	}
	return k, ""
}

// matchKeys returns the keys with this kid (any key when kid is empty)
// that can verify alg.
func matchKeys(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			continue
		}
		if !keyFitsAlg(k.Key, alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}

// keyFitsAlg reports whether key is of the type (and curve) alg needs.
func keyFitsAlg(key any, alg string) bool {
	switch pk := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pk.Curve == elliptic.P256()
		case "ES384":
			return pk.Curve == elliptic.P384()
		case "ES512":
			return pk.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
