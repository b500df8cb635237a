package apppage

import (
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Handler serves the page under its root path.
type Handler struct {
	opts   Options
	root   string // the URL's path, ending in "/"
	origin string // scheme://host of the URL
	secure bool   // https: Secure, __Host- cookies
	mux    *http.ServeMux
	csrf   *http.CrossOriginProtection
	tmpl   *template.Template
	log    *slog.Logger
	// signIns bounds the sign-ins started (see signInRate).
	signIns signInLimits
}

// New returns the page's handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil || opts.Provider == nil || opts.Authenticator == nil {
		return nil, errors.New("apppage: Store, Provider and Authenticator are required")
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("apppage: URL must be an absolute http(s) URL")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Title == "" {
		opts.Title = u.Hostname()
	}
	h := &Handler{
		opts:   opts,
		root:   strings.TrimSuffix(u.EscapedPath(), "/") + "/",
		origin: u.Scheme + "://" + u.Host,
		secure: u.Scheme == "https",
		mux:    http.NewServeMux(),
		csrf:   http.NewCrossOriginProtection(),
		tmpl:   pageTemplates,
		log:    opts.Logger,
	}
	// The page's own origin is trusted even when a reverse proxy in front
	// passes another Host (browsers without Sec-Fetch-Site send Origin).
	if err := h.csrf.AddTrustedOrigin(h.origin); err != nil {
		return nil, fmt.Errorf("apppage: URL: %w", err)
	}
	h.signIns = newSignInLimits(opts.ProxiedClients, func() time.Time { return h.opts.Now() })
	h.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, errForged)
	}))
	h.routes()
	return h, nil
}

// RedirectURL is the callback URL of the page at pageURL (Options.URL), to
// register at the provider and give OIDCOptions.RedirectURL.
func RedirectURL(pageURL string) string { return strings.TrimSuffix(pageURL, "/") + "/callback" }

func (h *Handler) routes() {
	get := func(p string, f http.HandlerFunc) { h.mux.HandleFunc("GET "+h.root+p, f) }
	post := func(p string, f http.HandlerFunc) { h.mux.Handle("POST "+h.root+p, h.csrf.Handler(f)) }
	get("{$}", h.index)
	get("signin", h.signIn)
	get("callback", h.callback)
	get("style.css", asset("style.css", "text/css; charset=utf-8"))
	get("copy.js", asset("copy.js", "text/javascript; charset=utf-8"))
	get("thunderbird.xpi", h.addon)
	post("create", h.withSession(h.create))
	post("revoke", h.withSession(h.revoke))
	post("revoke-all", h.withSession(h.revokeAll))
	post("signout", h.withSession(h.signOut))
}

// ServeHTTP sets the security headers of every answer and routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	if h.secure {
		hd.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	h.mux.ServeHTTP(w, r)
}

// contentSecurityPolicy allows only the page's own style sheet and script,
// forms posting to the page, and no framing.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (h *Handler) addon(w http.ResponseWriter, r *http.Request) {
	var b []byte
	if h.opts.Addon != nil {
		b = h.opts.Addon()
	}
	if len(b) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/x-xpinstall")
	w.Header().Set("Content-Disposition", `attachment; filename="mailgate-oauth.xpi"`)
	w.Write(b)
}
