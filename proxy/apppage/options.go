package apppage

import (
	"context"
	"log/slog"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

// Defaults of Options.
const (
	// SessionLifetime is how long a signed-in session lasts.
	SessionLifetime = time.Hour
	// signInLifetime bounds the time between GET signin and the callback.
	signInLifetime = 10 * time.Minute
	// opTimeout bounds the store and provider calls of one request.
	opTimeout = 15 * time.Second
	// maxFormBytes bounds a POST body.
	maxFormBytes = 16 << 10
)

// Store is what the page needs of the app-password store
// (*apppass.Store).
type Store interface {
	List(ctx context.Context, user string) ([]apppass.Record, error)
	Create(ctx context.Context, user, name string, protocols []apppass.Protocol, expiry time.Duration) (string, apppass.Record, error)
	Revoke(ctx context.Context, user, id string) error
	RevokeAll(ctx context.Context, user string) (int, error)
	SetRefreshToken(ctx context.Context, user, refreshToken string) error
	LinkStatus(ctx context.Context, user string) (apppass.Link, error)

	BeginSignIn(ctx context.Context, ttl time.Duration) (apppass.SignIn, error)
	TakeSignIn(ctx context.Context, state string) (string, error)
	CreateSession(ctx context.Context, user string, ttl time.Duration) (string, apppass.Session, error)
	Session(ctx context.Context, id string) (apppass.Session, error)
	EndSession(ctx context.Context, id string) error
	EndSessions(ctx context.Context, user string) (int, error)
}

// Options configure New. Store, Provider, Authenticator and URL are
// required.
type Options struct {
	Store    Store
	Provider Provider
	// Authenticator checks the access token of a sign-in, as for an OAuth
	// mail login, and names the mailbox.
	Authenticator auth.Authenticator
	// URL is the page's public URL (https, or http on loopback); its path,
	// with a trailing slash, is the page's root.
	URL string
	// Protocols are those an app password may be made for, in the form's
	// order. Empty: all.
	Protocols []apppass.Protocol
	// DefaultExpiry and MaxExpiry are the store's policy (apppass.Policy):
	// the lifetime of a password made without one (zero: MaxExpiry), and
	// the bound of the lifetimes offered (zero: none).
	DefaultExpiry, MaxExpiry time.Duration
	// Title names the service in the page ("Example Mail"). Empty: the
	// page's host.
	Title string
	// Links lists what the page offers besides app passwords (the
	// Thunderbird add-on, the autoconfig document), for the user's
	// mailbox. Nil: nothing.
	Links func(user string) []Link
	// Addon is the Thunderbird add-on served at "thunderbird.xpi" under
	// the root. Nil: none.
	Addon func() []byte
	// ProxiedClients says that requests come through a reverse proxy, so
	// that their address is the proxy's: sign-ins are then limited in all
	// only, not per client address.
	ProxiedClients bool
	// Logger receives one line per sign-in, creation, revocation and
	// failure; never a token, password or code. Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
}

// Link is a labelled URL shown on the page.
type Link struct {
	Label, URL, Note string
}
