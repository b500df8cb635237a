package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client authentication methods of IntrospectionValidator (RFC 6749 §2.3.1,
// OpenID Connect Core §9).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
)

// introspectionSkew tolerates clock differences when an active
// introspection answer carries an "exp".
const introspectionSkew = 30 * time.Second

// IntrospectionValidator validates tokens with RFC 7662 token
// introspection: POST token=…&token_type_hint=access_token, authenticated
// as ClientID/ClientSecret. The token is valid when the answer (a JSON
// object of at most 64 KiB) has "active": true; the answer is the claims.
//
// Answers: active false means refused (revoked, expired, unknown);
// HTTP 400/401/403 from the endpoint itself means mailgate's own client
// credentials are wrong, which is logged as an error and reported as
// ErrUnavailable (it is not the user's fault, and the user should not be
// told to fetch a new token); anything else but 200 with a JSON object is
// ErrUnavailable.
//
// Besides "active", the answer is checked for: "exp" not past (with 30 s
// skew), "token_use"/"token_type" not naming a refresh token, and, when
// Audiences is set, one of "aud", "azp" or "client_id" in Audiences.
// Claims under "ext" (Ory Hydra's place for session claims) are copied to
// the top level when the top level lacks them.
type IntrospectionValidator struct {
	// URL of the introspection endpoint. Required.
	URL string
	// ClientID and ClientSecret authenticate mailgate to the endpoint.
	ClientID     string
	ClientSecret string
	// AuthMethod is ClientSecretBasic (default when empty) or
	// ClientSecretPost. With basic, the id and secret are form-encoded
	// before base64 as RFC 6749 §2.3.1 requires.
	AuthMethod string
	// Audiences, when not empty, lists the accepted "aud", "azp" or
	// "client_id" values.
	Audiences []string
	// Client sends the request. Nil: a client from NewHTTPClient("").
	Client *http.Client
	// Timeout for the whole request, body included. Zero: DefaultValidateTimeout.
	Timeout time.Duration
	// Logger receives configuration errors (rejected client credentials).
	// Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

var _ Validator = IntrospectionValidator{}

// Validate implements Validator.
func (v IntrospectionValidator) Validate(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidCredentials)
	}
	if v.URL == "" {
		return nil, fmt.Errorf("%w: introspection: no URL configured", ErrUnavailable)
	}
	timeout, client, log := v.Timeout, v.Client, v.Logger
	if timeout <= 0 {
		timeout = DefaultValidateTimeout
	}
	if client == nil {
		client = defaultHTTPClient()
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	method := v.AuthMethod
	switch method {
	case "", ClientSecretBasic:
		method = ClientSecretBasic
	case ClientSecretPost:
		form.Set("client_id", v.ClientID)
		form.Set("client_secret", v.ClientSecret)
	default:
		return nil, fmt.Errorf("%w: introspection: unknown client authentication %q", ErrUnavailable, method)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if method == ClientSecretBasic && (v.ClientID != "" || v.ClientSecret != "") {
		req.SetBasicAuth(url.QueryEscape(v.ClientID), url.QueryEscape(v.ClientSecret))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized, http.StatusForbidden:
		err := fmt.Errorf("%w: introspection: HTTP %d: the endpoint refused mailgate's client credentials (oauth2.client_id, oauth2.client_secret, oauth2.introspection_auth %s)",
			ErrUnavailable, resp.StatusCode, method)
		log.ErrorContext(ctx, "auth: introspection endpoint refused mailgate's own credentials: every login fails until this is fixed",
			"status", resp.StatusCode, "client_id", v.ClientID, "auth_method", method)
		return nil, err
	default:
		return nil, fmt.Errorf("%w: introspection: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	c, err := decodeClaims("introspection", resp.Body)
	if err != nil {
		return nil, err
	}
	switch active := c["active"].(type) {
	case bool:
		if !active {
			return nil, fmt.Errorf("%w: introspection: token not active (revoked, expired or unknown)", ErrInvalidCredentials)
		}
	case nil:
		return nil, fmt.Errorf(`%w: introspection: answer has no "active" member`, ErrUnavailable)
	default:
		return nil, fmt.Errorf(`%w: introspection: "active" is not a boolean`, ErrUnavailable)
	}
	if use, _ := c.String("token_use"); use != "" && use != "access_token" {
		return nil, fmt.Errorf("%w: introspection: token_use is %q, not access_token", ErrInvalidCredentials, use)
	}
	if typ, _ := c.String("token_type"); strings.Contains(strings.ToLower(typ), "refresh") {
		return nil, fmt.Errorf("%w: introspection: token_type is %q", ErrInvalidCredentials, typ)
	}
	if exp, ok := c.Time("exp"); ok {
		now := time.Now()
		if v.Now != nil {
			now = v.Now()
		}
		if !now.Before(exp.Add(introspectionSkew)) {
			return nil, fmt.Errorf("%w: introspection: token expired at %s (%s ago)", ErrInvalidCredentials,
				exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second))
		}
	}
	if err := checkAudience("introspection", c, v.Audiences); err != nil {
		return nil, err
	}
	liftExt(c)
	return c, nil
}

// liftExt copies the members of an "ext" object (Ory Hydra puts the
// session's access-token claims there) to the top level, without
// overwriting anything the answer has at the top level.
func liftExt(c Claims) {
	ext, ok := c["ext"].(map[string]any)
	if !ok {
		return
	}
	for k, v := range ext {
		if _, exists := c[k]; !exists {
			c[k] = v
		}
	}
}
