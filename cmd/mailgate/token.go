package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
)

// Token validation limits that have no configuration key.
const (
	// maxProviderCalls bounds the calls to the identity provider in flight.
	maxProviderCalls = 64
	// tokenCommandTimeout bounds "mailgate token" as a whole.
	tokenCommandTimeout = 30 * time.Second
	// maxTokenInput caps a token read from standard input.
	maxTokenInput = 64 << 10
)

// tokenStdin is where "mailgate token -" reads the token (tests replace it).
var tokenStdin io.Reader = os.Stdin

const tokenHelp = `Usage: mailgate token [--config FILE] [flags] [TOKEN | -]

Validates an access token exactly as "mailgate serve" does (the oauth2
section of the configuration: mode, provider, audiences, identity policy)
and prints the mailbox it resolves to and the claims used or, for a refused
token, exactly why. The cache is bypassed: the provider is asked now.

Without TOKEN, or with "-", the token is read from standard input, which
keeps it out of the shell history and the process list. The token itself
is never printed: it is named by the start of its SHA-256.

Exit status: 0 accepted, 1 refused, 2 usage or configuration error,
3 provider unavailable.
`

func runToken(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("token", tokenHelp, stdout, stderr).withConfig("oauth2", "log")
	if ok, code := cmd.parse(args); !ok {
		return code
	}
	cfg, err := cmd.loadConfig()
	if err != nil {
		return cmd.fail(2, "%v", err)
	}
	if probs := oauth2Problems(cfg.Validate()); len(probs) > 0 {
		cmd.problems("the oauth2 configuration has problems ("+cmd.source+")", errors.Join(probs...))
		return 2
	}
	token, err := tokenArg(cmd.fs.Args())
	if err != nil {
		cmd.usageError("%v", err)
		return 2
	}
	log, _ := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	v, policy, err := newValidator(cfg, log, nil, nil)
	if err != nil {
		return cmd.fail(2, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tokenCommandTimeout)
	defer cancel()
	r := auth.Explain(ctx, v, policy, token)
	printReport(stdout, r, cfg.OAuth2.Mode, time.Now())
	switch {
	case r.Err == nil:
		return 0
	case errors.Is(r.Err, auth.ErrUnavailable):
		return 3
	default:
		return 1
	}
}

// tokenArg returns the token from the arguments or standard input.
func tokenArg(args []string) (string, error) {
	if len(args) > 1 {
		return "", errors.New("one token at a time")
	}
	if len(args) == 1 && args[0] != "-" {
		return strings.TrimSpace(args[0]), nil
	}
	line, err := bufio.NewReader(io.LimitReader(tokenStdin, maxTokenInput)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the token: %w", err)
	}
	tok := strings.TrimSpace(line)
	tok = strings.TrimSpace(strings.TrimPrefix(tok, "Bearer "))
	if tok == "" {
		return "", errors.New("no token given (pass it as an argument or on standard input)")
	}
	return tok, nil
}

// oauth2Problems keeps the configuration problems that matter for token
// validation: those of the oauth2 section.
func oauth2Problems(err error) []error {
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []error
	for _, e := range errs {
		var fe *config.FieldError
		if errors.As(e, &fe) && !strings.HasPrefix(fe.Key, "oauth2.") {
			continue
		}
		out = append(out, e)
	}
	return out
}

// newValidator builds the token validator of cfg.OAuth2 (mode userinfo,
// introspection, jwt or auto) behind an auth.Cache (cache_ttl,
// negative_cache_ttl, at most maxProviderCalls provider calls at once), and
// the identity policy. cfg must have been validated. Nothing is fetched yet:
// a JWT validator discovers the issuer's keys on first use.
//
// wrap, if not nil, wraps the provider-facing validator (inside the cache),
// e.g. to time real provider calls.
func newValidator(cfg *config.Config, log *slog.Logger, wrap func(auth.Validator) auth.Validator, shared auth.SharedCache) (*auth.Cache, auth.Policy, error) {
	o := cfg.OAuth2
	client, err := auth.NewHTTPClient(o.CAFile)
	if err != nil {
		return nil, auth.Policy{}, fmt.Errorf("oauth2.ca_file: %w", err)
	}
	authLog := log.With("component", "auth")
	var userinfo, introspection auth.Validator
	if o.UserinfoURL != "" {
		userinfo = auth.UserinfoValidator{URL: o.UserinfoURL, Client: client, Timeout: o.Timeout}
	}
	if o.IntrospectionURL != "" {
		introspection = auth.IntrospectionValidator{
			URL: o.IntrospectionURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
			AuthMethod: o.IntrospectionAuth, Audiences: cfg.Audiences(),
			Client: client, Timeout: o.Timeout, Logger: authLog,
		}
	}
	newJWT := func() (*auth.JWTValidator, error) {
		return auth.NewJWTValidator(auth.JWTOptions{
			Issuer: o.Issuer, Audiences: cfg.Audiences(), Client: client, Timeout: o.Timeout, Logger: authLog,
		})
	}
	var v auth.Validator
	switch o.Mode {
	case config.ModeUserinfo:
		if userinfo == nil {
			return nil, auth.Policy{}, errors.New("oauth2.mode userinfo needs oauth2.userinfo_url")
		}
		v = userinfo
	case config.ModeIntrospection:
		if introspection == nil {
			return nil, auth.Policy{}, errors.New("oauth2.mode introspection needs oauth2.introspection_url")
		}
		v = introspection
	case config.ModeJWT, config.ModeAuto:
		jv, err := newJWT()
		if err != nil {
			return nil, auth.Policy{}, fmt.Errorf("oauth2: %w", err)
		}
		if o.Mode == config.ModeJWT {
			v = jv
			break
		}
		fallback := introspection
		if fallback == nil {
			fallback = userinfo
		}
		v = auth.AutoValidator{JWT: jv, Fallback: fallback}
	default:
		return nil, auth.Policy{}, fmt.Errorf("oauth2.mode %q: want userinfo, introspection, jwt or auto", o.Mode)
	}
	policy := auth.Policy{
		UsernameClaim:        o.UsernameClaim,
		RequireEmailVerified: o.RequireEmailVerified,
		AllowedDomains:       o.AllowedDomains,
		RequiredScopes:       o.RequiredScopes,
	}
	if wrap != nil {
		v = wrap(v)
	}
	cached := auth.NewCache(v, auth.CacheOptions{
		TTL: o.CacheTTL, NegativeTTL: o.NegativeCacheTTL, MaxConcurrent: maxProviderCalls,
		Shared: shared, SharedNamespace: sharedNamespace(cfg),
	})
	return cached, policy, nil
}

// newThrottle maps limits.auth_failures_per_ip (failures per minute before
// delays start; 0 = no throttling) to the throttle shared by IMAP and SMTP;
// it groups client addresses into networks as the connection caps do
// (limits.ipv4_prefix, limits.ipv6_prefix). With shared (cluster.redis) the
// scores are those of every replica.
func newThrottle(cfg *config.Config, log *slog.Logger, shared auth.SharedThrottle) *auth.Throttle {
	n := cfg.Limits.AuthFailuresPerIP
	if n <= 0 {
		return nil
	}
	return auth.NewThrottle(auth.ThrottleOptions{
		Failures:   n,
		IPv4Prefix: cfg.Limits.IPv4Prefix,
		IPv6Prefix: cfg.Limits.IPv6Prefix,
		Logger:     log.With("component", "auth"),
		Shared:     shared, SharedFailClosed: cfg.Cluster.Redis.WhenDown == config.RedisRefuse,
	})
}

// printReport writes r for a person. It never prints the token.
func printReport(w io.Writer, r auth.Report, mode string, now time.Time) {
	desc := r.Format
	if r.Format == "jwt" {
		var parts []string
		for _, k := range []string{"alg", "kid", "typ"} {
			if v, ok := r.Header[k]; ok {
				parts = append(parts, k+" "+jsonText(v))
			}
		}
		desc += ": " + strings.Join(parts, ", ")
	}
	fmt.Fprintf(w, "token     sha256:%s… (%s)\n", r.TokenSHA256, desc)
	src := r.Source
	if src == "" {
		src = "?"
	}
	fmt.Fprintf(w, "checked   by %s (oauth2.mode %s)\n", src, mode)
	switch {
	case r.Err == nil:
		fmt.Fprintf(w, "result    ACCEPTED: %s\n", r.Identity)
	case errors.Is(r.Err, auth.ErrUnavailable):
		fmt.Fprintf(w, "result    NO ANSWER (provider unavailable; clients get a temporary failure): %s\n", r.Reason)
	default:
		fmt.Fprintf(w, "result    REFUSED: %s\n", r.Reason)
	}
	for _, h := range r.Hints {
		fmt.Fprintf(w, "hint      %s\n", h)
	}
	if !r.Expiry.IsZero() {
		rel := "in " + r.Expiry.Sub(now).Round(time.Second).String()
		if !r.Expiry.After(now) {
			rel = now.Sub(r.Expiry).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "expires   %s (%s)\n", r.Expiry.UTC().Format(time.RFC3339), rel)
	}
	if len(r.Used) == 0 {
		return
	}
	if r.Claims != nil {
		fmt.Fprintln(w, "claims used (as vouched for by the validator):")
	} else {
		fmt.Fprintln(w, "claims (read from the token, NOT verified):")
	}
	width := 0
	for _, u := range r.Used {
		width = max(width, len(u.Name))
	}
	for _, u := range r.Used {
		val := "(absent)"
		if u.Present {
			val = jsonText(u.Value)
			if t, ok := (auth.Claims{u.Name: u.Value}).Time(u.Name); ok && (u.Name == "exp" || u.Name == "nbf" || u.Name == "iat") {
				val += " = " + t.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(w, "  %-*s  %s   [%s]\n", width, u.Name, val, u.Why)
	}
}

// jsonText renders a claim value as JSON, shortened to one line.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const maxLen = 200
	if len(b) > maxLen {
		return string(b[:maxLen]) + "…"
	}
	return string(b)
}
