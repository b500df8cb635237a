package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Validator checks a bearer token with the identity provider and returns
// its claims. Errors wrap ErrInvalidCredentials (the provider refused the
// token) or ErrUnavailable (no answer); they never contain the token.
type Validator interface {
	Validate(ctx context.Context, token string) (Claims, error)
}

// DefaultValidateTimeout bounds one validation when no timeout is set.
const DefaultValidateTimeout = 5 * time.Second

// maxResponseBody caps what is read from the provider.
const maxResponseBody = 64 << 10

// UserinfoValidator validates tokens with the OpenID Connect userinfo
// endpoint (OpenID Connect Core 1.0 §5.3): GET with "Authorization: Bearer".
// A 200 answer holding a JSON object gives the claims; 400, 401 and 403 mean
// the token is refused; anything else, including a body over 64 KiB or a
// signed (JWT) userinfo answer, means the provider is unavailable.
type UserinfoValidator struct {
	// URL of the userinfo endpoint. Required.
	URL string
	// Client sends the request. Nil: a client from NewHTTPClient("").
	Client *http.Client
	// Timeout for the whole request, body included. Zero: DefaultValidateTimeout.
	Timeout time.Duration
}

var defaultHTTPClient = sync.OnceValue(func() *http.Client {
	c, _ := NewHTTPClient("") // cannot fail without a CA file
	return c
})

// Validate implements Validator.
func (v UserinfoValidator) Validate(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidCredentials)
	}
	if v.URL == "" {
		return nil, fmt.Errorf("%w: userinfo: no URL configured", ErrUnavailable)
	}
	timeout, client := v.Timeout, v.Client
	if timeout <= 0 {
		timeout = DefaultValidateTimeout
	}
	if client == nil {
		client = defaultHTTPClient()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %w", ErrUnavailable, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden,
		resp.StatusCode == http.StatusBadRequest:
		return nil, fmt.Errorf("%w: userinfo: HTTP %d", ErrInvalidCredentials, resp.StatusCode)
	default:
		return nil, fmt.Errorf("%w: userinfo: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	return decodeClaims("userinfo", resp.Body)
}

// decodeClaims reads a JSON object of at most maxResponseBody bytes.
func decodeClaims(source string, r io.Reader) (Claims, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: reading body: %w", ErrUnavailable, source, err)
	}
	if len(body) > maxResponseBody {
		return nil, fmt.Errorf("%w: %s: response larger than %d bytes", ErrUnavailable, source, maxResponseBody)
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, fmt.Errorf("%w: %s: response is not a JSON object", ErrUnavailable, source)
		}
		return nil, fmt.Errorf("%w: %s: invalid JSON: %w", ErrUnavailable, source, err)
	}
	if c == nil { // "null"
		return nil, fmt.Errorf("%w: %s: response is not a JSON object", ErrUnavailable, source)
	}
	return c, nil
}
