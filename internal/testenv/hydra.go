package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// defaultTokenLifespan is the access token lifetime of the default clients.
	defaultTokenLifespan = time.Hour
	// expiringLifespan is the lifetime of the "expiring" clients' tokens.
	expiringLifespan = time.Second
	// httpTimeout bounds one HTTP request to Hydra.
	httpTimeout = 15 * time.Second
	// maxHTTPBody bounds a response body read from Hydra.
	maxHTTPBody = 1 << 20
	// clientScope is what every registered client may request.
	clientScope = "openid email profile offline_access"
)

// HydraOptions configures [NewHydra]. The zero value is the default.
type HydraOptions struct {
	// Binary is the Hydra v2.3.0 binary. Empty: HydraBinary().
	Binary string
	// AccessTokenLifespan is the lifetime of tokens minted without
	// TokenOptions.Lifetime. Zero: one hour.
	AccessTokenLifespan time.Duration
	// LogLevel is Hydra's log level (debug, info, warn, error). Empty: warn
	// (info logs every request in long lines).
	LogLevel string
}

// Hydra is a running Ory Hydra v2.3.0 (in-memory database, telemetry off,
// --dev so the issuer may be http://127.0.0.1). Exported fields are read-only.
//
// Registered OAuth2 clients, all with ClientSecret and the allowed audience
// Audience: ClientID (JWT access tokens), OpaqueClientID (opaque ory_at_
// tokens) and two with 1 s tokens (used by TokenOptions.Expired). More are
// registered on demand for other TokenOptions.Lifetime/Audience/Scopes.
type Hydra struct {
	Dir       string // instance directory (removed by Stop)
	PublicURL string // http://127.0.0.1:port, no trailing slash
	AdminURL  string // http://127.0.0.1:port, no trailing slash

	Issuer           string // PublicURL + "/" (the iss claim)
	DiscoveryURL     string // Issuer + ".well-known/openid-configuration"
	JWKSURL          string // public signing keys
	AuthURL          string // authorization endpoint
	TokenURL         string // token endpoint
	UserinfoURL      string // OIDC userinfo: 200 + claims, or 401 for a bad/expired/revoked token
	RevocationURL    string // RFC 7009 revocation (client authentication required)
	IntrospectionURL string // RFC 7662 introspection, on the admin port; ignores client credentials

	ClientID       string // "mailgate": JWT access tokens
	OpaqueClientID string // "mailgate-opaque": opaque access tokens
	ClientSecret   string // secret of every registered client (client_secret_basic)
	Audience       string // "mailgate": the default aud of minted tokens
	RedirectURL    string // registered redirect URI; nothing listens there

	LogPath string // Hydra's output (HydraOptions.LogLevel)
	Log     Log    // LogPath as a Log

	lifespan time.Duration
	logLevel string
	http     *http.Client
	// uiAddr is the host:port of urls.login and urls.consent: nothing
	// listens there unless StartLoginApp runs (Mint reads the redirects
	// itself).
	uiAddr string

	appMu sync.Mutex
	app   *LoginApp // the running login app, if any

	mu      sync.Mutex
	clients map[clientKey]string // registered clients by properties -> id

	d        *daemon
	stopOnce sync.Once
	stopErr  error
}

// clientKey identifies a registered client by what it mints.
type clientKey struct {
	opaque   bool
	lifespan time.Duration // 0: the instance default
	audience string        // space-separated allowed audience
	scope    string        // space-separated allowed scope
}

// StartHydra starts Hydra for a test and stops it in tb.Cleanup. It skips or
// fails tb (see [Require]) when the Hydra binary is missing.
func StartHydra(tb testing.TB, opts HydraOptions) *Hydra {
	tb.Helper()
	if opts.Binary == "" {
		Require(tb, PartHydra)
	}
	return startForTest(tb, "hydra", 30, func(ctx context.Context) (*Hydra, error) { return NewHydra(ctx, opts) },
		func(x *Hydra) Log { return x.Log }, (*Hydra).Stop)
}

// NewHydra starts Hydra and registers the default clients; ctx bounds the
// start-up only (default 30 s). The caller must call Stop.
func NewHydra(ctx context.Context, opts HydraOptions) (*Hydra, error) {
	bin := opts.Binary
	if bin == "" {
		host, err := Check(PartHydra)
		if err != nil {
			return nil, err
		}
		bin = host.Hydra
	} else if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: Hydra binary: %v", ErrUnavailable, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	h := &Hydra{
		ClientID:       "mailgate",
		OpaqueClientID: "mailgate-opaque",
		ClientSecret:   randomString(16),
		Audience:       "mailgate",
		lifespan:       opts.AccessTokenLifespan,
		logLevel:       opts.LogLevel,
		http: &http.Client{
			Timeout:   httpTimeout,
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: false, MaxIdleConnsPerHost: 4},
			// The auth-code flow reads Location headers itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		clients: map[clientKey]string{},
	}
	if h.logLevel == "" {
		h.logLevel = "warn"
	}
	if h.lifespan <= 0 {
		h.lifespan = defaultTokenLifespan
	}
	if h.lifespan%time.Second != 0 {
		return nil, errors.New("hydra: AccessTokenLifespan must be whole seconds")
	}
	var err error
	if h.Dir, err = makeInstanceDir("", "hydra"); err != nil {
		return nil, err
	}
	if err := h.start(ctx, bin); err != nil {
		h.Stop()
		return nil, err
	}
	return h, nil
}

func (h *Hydra) start(ctx context.Context, bin string) error {
	h.LogPath = filepath.Join(h.Dir, "hydra.log")
	h.Log = Log{Path: h.LogPath}
	conf := filepath.Join(h.Dir, "hydra.yml")
	env := append(append([]string(nil), daemonEnv...), "SQA_OPT_OUT=true", "HOME="+h.Dir)
	for attempt := 1; ; attempt++ {
		ports, err := pickPorts("127.0.0.1", 3)
		if err != nil {
			return err
		}
		if err := h.writeConf(conf, ports); err != nil {
			return err
		}
		h.d, err = startDaemon("hydra", bin, []string{"serve", "all", "--dev", "--sqa-opt-out", "-c", conf}, env, h.LogPath, h.Dir, "")
		if err != nil {
			return err
		}
		err = pollReady(ctx, h.d, []func(context.Context) error{
			func(ctx context.Context) error {
				return h.expectStatus(ctx, h.PublicURL+"/health/ready", http.StatusOK)
			},
			func(ctx context.Context) error { return h.expectStatus(ctx, h.AdminURL+"/health/ready", http.StatusOK) },
		})
		if err == nil {
			break
		}
		h.d.stop()
		if attempt < maxStartAttempts && portConflict(h.Log.String()) {
			continue
		}
		return fmt.Errorf("hydra did not start: %w\n%s", err, h.Log.TailBlock(30))
	}
	// The first JWKS request generates the signing keys (~0.6 s): do it now.
	if err := h.expectStatus(ctx, h.JWKSURL, http.StatusOK); err != nil {
		return fmt.Errorf("hydra jwks: %w", err)
	}
	for _, k := range []struct {
		id  string
		key clientKey
	}{
		{h.ClientID, clientKey{}},
		{h.OpaqueClientID, clientKey{opaque: true}},
		{h.ClientID + "-expiring", clientKey{lifespan: expiringLifespan}},
		{h.ClientID + "-expiring-opaque", clientKey{opaque: true, lifespan: expiringLifespan}},
	} {
		k.key.audience, k.key.scope = h.Audience, clientScope
		if err := h.registerClient(ctx, k.id, k.key); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hydra) writeConf(path string, ports []int) error {
	h.PublicURL = "http://" + loopback(ports[0])
	h.AdminURL = "http://" + loopback(ports[1])
	h.uiAddr = loopback(ports[2])
	ui := "http://" + h.uiAddr // contacted only by browsers, when StartLoginApp runs
	h.Issuer = h.PublicURL + "/"
	h.DiscoveryURL = h.Issuer + ".well-known/openid-configuration"
	h.JWKSURL = h.Issuer + ".well-known/jwks.json"
	h.AuthURL = h.PublicURL + "/oauth2/auth"
	h.TokenURL = h.PublicURL + "/oauth2/token"
	h.UserinfoURL = h.PublicURL + "/userinfo"
	h.RevocationURL = h.PublicURL + "/oauth2/revoke"
	h.IntrospectionURL = h.AdminURL + "/admin/oauth2/introspect"
	h.RedirectURL = ui + "/callback"
	conf := fmt.Sprintf(`# generated by mailgate internal/testenv
dsn: memory
serve:
  public: {host: 127.0.0.1, port: %d}
  admin: {host: 127.0.0.1, port: %d}
urls:
  self: {issuer: "%s"}
  login: "%s/login"
  consent: "%s/consent"
secrets:
  system: ["%s"]
strategies:
  access_token: jwt
oauth2:
  allowed_top_level_claims: [email, email_verified, preferred_username, name]
  pkce: {enforced_for_public_clients: true}
ttl:
  access_token: %ds
log:
  level: %s
`, ports[0], ports[1], h.Issuer, ui, ui, randomString(24), int(h.lifespan/time.Second), h.logLevel)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write hydra.yml: %w", err)
	}
	return nil
}

// registerClient creates an OAuth2 client through the admin API.
func (h *Hydra) registerClient(ctx context.Context, id string, k clientKey) error {
	strategy := "jwt"
	if k.opaque {
		strategy = "opaque"
	}
	body := map[string]any{
		"client_id":                  id,
		"client_secret":              h.ClientSecret,
		"access_token_strategy":      strategy,
		"grant_types":                []string{"authorization_code", "refresh_token", "client_credentials"},
		"response_types":             []string{"code"},
		"scope":                      k.scope,
		"audience":                   strings.Fields(k.audience),
		"redirect_uris":              []string{h.RedirectURL},
		"token_endpoint_auth_method": "client_secret_basic",
	}
	if k.lifespan > 0 {
		body["authorization_code_grant_access_token_lifespan"] = fmt.Sprintf("%ds", int(k.lifespan/time.Second))
	}
	if _, err := h.adminJSON(ctx, http.MethodPost, "/admin/clients", body, http.StatusCreated); err != nil {
		return fmt.Errorf("register client %s: %w", id, err)
	}
	h.mu.Lock()
	h.clients[k] = id
	h.mu.Unlock()
	return nil
}

// clientFor returns a client minting tokens with k's properties, registering
// one if needed.
func (h *Hydra) clientFor(ctx context.Context, k clientKey) (string, error) {
	h.mu.Lock()
	id, ok := h.clients[k]
	n := len(h.clients)
	h.mu.Unlock()
	if ok {
		return id, nil
	}
	id = fmt.Sprintf("%s-%d-%s", h.ClientID, n, randomString(3))
	if err := h.registerClient(ctx, id, k); err != nil {
		return "", err
	}
	return id, nil
}

// adminJSON sends a JSON request to the admin API and decodes the reply
// into a map when it has the wanted status.
func (h *Hydra) adminJSON(ctx context.Context, method, path string, body any, want int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.AdminURL+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return h.doJSON(req, want)
}

// doJSON sends req and decodes a JSON object reply with status want.
func (h *Hydra) doJSON(req *http.Request, want int) (map[string]any, error) {
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, strings.TrimSpace(string(b)))
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, fmt.Errorf("%s %s: decode reply: %w", req.Method, req.URL.Path, err)
		}
	}
	return out, nil
}

// expectStatus GETs url and checks the status.
func (h *Hydra) expectStatus(ctx context.Context, url string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxHTTPBody))
	if resp.StatusCode != want {
		return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, want)
	}
	return nil
}

// LogContains reports whether Hydra's log contains substr.
func (h *Hydra) LogContains(substr string) bool { return h.Log.Contains(substr) }

// WaitLog waits until a line of Hydra's log contains substr and returns it;
// it fails tb with the log's tail after timeout.
func (h *Hydra) WaitLog(tb testing.TB, substr string, timeout time.Duration) string {
	tb.Helper()
	return h.Log.WaitSince(tb, 0, substr, timeout)
}

// Stop stops Hydra (all state is lost), waits for it to exit and removes Dir
// (unless MAILGATE_TESTENV_KEEP=1). It is idempotent.
func (h *Hydra) Stop() error {
	h.stopOnce.Do(func() {
		if h.d != nil {
			h.stopErr = h.d.stop()
		}
		if h.http != nil {
			h.http.CloseIdleConnections()
		}
		if h.stopErr == nil {
			h.stopErr = removeInstanceDir(h.Dir)
		}
	})
	return h.stopErr
}
