package apppage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailgate/mailgate/auth"
)

// Provider is the page's OAuth client at the provider.
type Provider interface {
	// AuthCodeURL is the authorization request for state with the PKCE
	// challenge of verifier. Errors wrap auth.ErrUnavailable.
	AuthCodeURL(ctx context.Context, state, verifier string) (string, error)
	// Issuer is the provider's issuer identifier (RFC 9207's iss).
	Issuer() string
	// Exchange redeems an authorization code.
	Exchange(ctx context.Context, code, verifier string) (Tokens, error)
	// Refresh redeems a refresh token. ErrRefused: the provider refused
	// the grant (invalid_grant: revoked, expired, user disabled, consent
	// withdrawn); any other error is temporary or a configuration problem.
	Refresh(ctx context.Context, refreshToken string) (Tokens, error)
}

// Tokens are a token response's tokens.
type Tokens struct {
	Access  string
	Refresh string // "" when the provider issued none (or kept the old one)
}

// ErrRefused: the provider refused a grant for the user (invalid_grant).
var ErrRefused = errors.New("apppage: the provider refused the grant")

// OIDCOptions configure NewOIDC.
type OIDCOptions struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURL  string
	// Scopes requested besides openid and offline_access.
	Scopes []string
	// Client makes the provider requests (timeouts, CA). Nil:
	// http.DefaultClient.
	Client *http.Client
	// Retry is how long a failed discovery is remembered before the next
	// request tries again. Zero: 30s.
	Retry time.Duration
}

// OIDC is a Provider that reads the endpoints from the issuer's OpenID
// configuration on first use and again every metadataMaxAge (after a
// failure at most every Retry, using the last ones read meanwhile), and
// authenticates with the client secret (HTTP Basic).
type OIDC struct {
	opts OIDCOptions

	mu      sync.Mutex
	conf    *oauth2.Config
	fetched time.Time // when conf was read
	failed  time.Time // the last failed read (zero: the last read worked)
	lastErr error
}

// NewOIDC returns a Provider for opts.
func NewOIDC(opts OIDCOptions) *OIDC {
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	if opts.Retry <= 0 {
		opts.Retry = 30 * time.Second
	}
	return &OIDC{opts: opts}
}

// Issuer implements Provider.
func (o *OIDC) Issuer() string { return o.opts.Issuer }

// metadataMaxAge is how long the endpoints read from the provider's
// OpenID configuration are used before they are read again.
const metadataMaxAge = time.Hour

// config returns the oauth2 configuration, reading the provider's OpenID
// configuration when there is none or it is over metadataMaxAge old; a
// failed read keeps the last one read, and is not retried for Retry.
func (o *OIDC) config(ctx context.Context) (*oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	if o.conf != nil && now.Sub(o.fetched) < metadataMaxAge || !o.failed.IsZero() && now.Sub(o.failed) < o.opts.Retry {
		return o.current()
	}
	m, err := auth.FetchMetadata(ctx, o.opts.Client, o.opts.Issuer)
	if err == nil && (m.AuthorizationEndpoint == "" || m.TokenEndpoint == "") {
		err = fmt.Errorf("%w: the OpenID configuration of %s names no authorization or token endpoint", auth.ErrUnavailable, o.opts.Issuer)
	}
	if err != nil {
		o.failed, o.lastErr = now, err
		return o.current()
	}
	o.conf = &oauth2.Config{
		ClientID:     o.opts.ClientID,
		ClientSecret: o.opts.ClientSecret,
		Endpoint:     oauth2.Endpoint{AuthURL: m.AuthorizationEndpoint, TokenURL: m.TokenEndpoint, AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL:  o.opts.RedirectURL,
		Scopes:       scopes(o.opts.Scopes),
	}
	o.fetched, o.failed = now, time.Time{}
	return o.conf, nil
}

// current is the last configuration read, or the last read's error when
// none was. o.mu is held.
func (o *OIDC) current() (*oauth2.Config, error) {
	if o.conf != nil {
		return o.conf, nil
	}
	return nil, o.lastErr
}

// scopes is openid, offline_access and extra, once each.
func scopes(extra []string) []string {
	out := []string{"openid", "offline_access"}
	for _, s := range extra {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// AuthCodeURL implements Provider.
func (o *OIDC) AuthCodeURL(ctx context.Context, state, verifier string) (string, error) {
	c, err := o.config(ctx)
	if err != nil {
		return "", err
	}
	return c.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange implements Provider.
func (o *OIDC) Exchange(ctx context.Context, code, verifier string) (Tokens, error) {
	c, err := o.config(ctx)
	if err != nil {
		return Tokens{}, err
	}
	t, err := c.Exchange(o.clientContext(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Tokens{}, tokenError("code exchange", err)
	}
	return Tokens{Access: t.AccessToken, Refresh: t.RefreshToken}, nil
}

// Refresh implements Provider.
func (o *OIDC) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	c, err := o.config(ctx)
	if err != nil {
		return Tokens{}, err
	}
	t, err := c.TokenSource(o.clientContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return Tokens{}, tokenError("refresh", err)
	}
	rt := t.RefreshToken
	if rt == refreshToken {
		rt = ""
	}
	return Tokens{Access: t.AccessToken, Refresh: rt}, nil
}

func (o *OIDC) clientContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, o.opts.Client)
}

// tokenError classifies a token endpoint failure without its body (which
// may echo a secret): invalid_grant is ErrRefused, an answer of the
// provider about our client is a configuration problem, anything else is
// temporary.
func tokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("%w: %s: the token endpoint did not answer: %s", auth.ErrUnavailable, op, scrubURLError(err))
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	switch code := re.ErrorCode; {
	case code == "invalid_grant":
		return fmt.Errorf("%w: %s: invalid_grant (HTTP %d)", ErrRefused, op, status)
	case code != "":
		return fmt.Errorf("%s: the provider answered %s (HTTP %d): check app_passwords.oidc_client_id and its secret", op, oneWord(code), status)
	default:
		return fmt.Errorf("%w: %s: the token endpoint answered HTTP %d", auth.ErrUnavailable, op, status)
	}
}

// scrubURLError keeps a transport error's cause, not the URL's query.
func scrubURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return "request failed"
}

// oneWord bounds a provider's error code for the log.
func oneWord(s string) string {
	if len(s) > 40 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "an error"
	}
	return s
}
