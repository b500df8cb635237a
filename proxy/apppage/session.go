package apppage

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/mailgate/mailgate/auth/apppass"
)

// Cookie names; "__Host-" (Secure, Path=/, no Domain) when the page is
// https, so that no other host or path can plant them.
const (
	sessionCookie = "mailgate-session"
	signInCookie  = "mailgate-signin"
)

func (h *Handler) cookieName(base string) string {
	if h.secure {
		return "__Host-" + base
	}
	return base
}

// setCookie sets (maxAge > 0) or clears (maxAge < 0) a cookie.
func (h *Handler) setCookie(w http.ResponseWriter, base, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: h.cookieName(base), Value: value, Path: "/", MaxAge: maxAge,
		Secure: h.secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) cookie(r *http.Request, base string) string {
	c, err := r.Cookie(h.cookieName(base))
	if err != nil {
		return ""
	}
	return c.Value
}

// signedIn is the session of r's cookie; ok false when there is none (or
// it ended); err when the store failed.
type signedIn struct {
	id string
	apppass.Session
}

func (h *Handler) session(ctx context.Context, r *http.Request) (signedIn, bool, error) {
	id := h.cookie(r, sessionCookie)
	if id == "" {
		return signedIn{}, false, nil
	}
	s, err := h.opts.Store.Session(ctx, id)
	switch {
	case errors.Is(err, apppass.ErrNoSession):
		return signedIn{}, false, nil
	case err != nil:
		return signedIn{}, false, err
	}
	return signedIn{id: id, Session: s}, true, nil
}

// withSession runs f for a POST of a signed-in user whose form carries
// the session's CSRF token; otherwise it fails.
func (h *Handler) withSession(f func(http.ResponseWriter, *http.Request, signedIn)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		s, ok, err := h.session(ctx, r)
		switch {
		case err != nil:
			h.fail(w, r, err)
		case !ok:
			h.fail(w, r, errSignedOut)
		case !s.ValidCSRF(r.PostFormValue("csrf")):
			h.fail(w, r, errForged)
		default:
			f(w, r, s)
		}
	}
}

func sameToken(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
