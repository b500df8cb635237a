package apppage

import (
	"errors"
	"net/http"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/auth/apppass"
)

// The page's own failures.
var (
	errSignedOut      = errors.New("apppage: not signed in")
	errForged         = errors.New("apppage: cross-site request or missing CSRF token")
	errStaleSignIn    = errors.New("apppage: sign-in state unknown, used or from another browser")
	errIssuerMixUp    = errors.New("apppage: authorization response from another issuer")
	errProviderSaidNo = errors.New("apppage: the provider returned an error to the callback")
	errNoRefreshToken = errors.New("apppage: the provider issued no refresh token (client needs offline_access and the refresh_token grant)")
	errNotVouched     = errors.New("apppage: the provider's token names no mailbox here")
	errBadForm        = errors.New("apppage: malformed form")
	errBusy           = errors.New("apppage: too many sign-ins under way")
)

// reply is what a failure shows: a status and a sentence for the user,
// never the error's text.
type reply struct {
	status int
	msg    string
	signIn bool // offer to sign in again
}

// replies maps errors to replies, first match wins; one place for all.
var replies = []struct {
	err error
	reply
}{
	{errSignedOut, reply{http.StatusUnauthorized, "You are signed out. Sign in again to continue.", true}},
	{errForged, reply{http.StatusForbidden, "This form was not sent from this page, or it has expired. Reload the page and try again.", false}},
	{errStaleSignIn, reply{http.StatusBadRequest, "This sign-in has expired or was started in another browser. Sign in again.", true}},
	{apppass.ErrNoSession, reply{http.StatusBadRequest, "This sign-in has expired or was started in another browser. Sign in again.", true}},
	{errIssuerMixUp, reply{http.StatusBadRequest, "The sign-in answer came from another provider. Sign in again.", true}},
	{errProviderSaidNo, reply{http.StatusForbidden, "The sign-in was cancelled or refused at the provider.", true}},
	{errNotVouched, reply{http.StatusForbidden, "Your account at the provider does not name a mailbox served here.", true}},
	{ErrRefused, reply{http.StatusForbidden, "The provider did not accept the sign-in. Sign in again.", true}},
	{errBadForm, reply{http.StatusBadRequest, "The form was incomplete. Go back and try again.", false}},
	{apppass.ErrBadName, reply{http.StatusBadRequest, "Give the app password a name of 1 to 100 characters, on one line.", false}},
	{apppass.ErrNotAllowed, reply{http.StatusBadRequest, "That protocol or lifetime is not allowed here.", false}},
	{apppass.ErrTooMany, reply{http.StatusConflict, "You have the most app passwords allowed. Revoke one first.", false}},
	{apppass.ErrNotFound, reply{http.StatusNotFound, "There is no such app password; it may have been revoked already.", false}},
	{errBusy, reply{http.StatusTooManyRequests, "Too many sign-ins right now. Try again in a minute.", false}},
	{auth.ErrUnavailable, reply{http.StatusServiceUnavailable, "The service is unavailable. Try again in a minute.", false}},
}

// fail answers r with the reply of err and logs err (whose text holds no
// secret: the store, provider and authenticator scrub theirs).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	rp := reply{http.StatusInternalServerError, "Something went wrong. Try again later.", false}
	for _, m := range replies {
		if errors.Is(err, m.err) {
			rp = m.reply
			break
		}
	}
	log := h.log.Info
	if rp.status >= 500 {
		log = h.log.Warn
	}
	log("app passwords page: refused", "path", r.URL.Path, "status", rp.status, "remote", r.RemoteAddr, "err", err.Error())
	if rp.status == http.StatusUnauthorized {
		h.setCookie(w, sessionCookie, "", -1)
	}
	h.render(w, rp.status, "message", h.page(messagePage{Message: rp.msg, SignIn: rp.signIn}))
}
