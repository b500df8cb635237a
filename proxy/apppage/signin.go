package apppage

import (
	"context"
	"fmt"
	"net/http"

	"github.com/mailgate/mailgate/auth"
)

// signIn starts an authorization request: state and PKCE verifier in the
// store, the state in a cookie of this browser.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	if !h.signIns.allow(r.RemoteAddr) {
		h.fail(w, r, errBusy)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	si, err := h.opts.Store.BeginSignIn(ctx, signInLifetime)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	to, err := h.opts.Provider.AuthCodeURL(ctx, si.State, si.Verifier)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.setCookie(w, signInCookie, si.State, int(signInLifetime.Seconds()))
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// callback completes a sign-in: one use of a state this browser started,
// the code redeemed with its verifier, the access token checked like a
// mail login's, the refresh token kept, and a new session.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	r = r.WithContext(ctx)
	q := r.URL.Query()
	h.setCookie(w, signInCookie, "", -1)
	if q.Has("error") {
		h.fail(w, r, errProviderSaidNo)
		return
	}
	state := q.Get("state")
	if state == "" || !sameToken(state, h.cookie(r, signInCookie)) {
		h.fail(w, r, errStaleSignIn)
		return
	}
	if q.Has("iss") && q.Get("iss") != h.opts.Provider.Issuer() {
		h.fail(w, r, errIssuerMixUp)
		return
	}
	verifier, err := h.opts.Store.TakeSignIn(ctx, state)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	id, refresh, err := h.identify(ctx, r, q.Get("code"), verifier)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.opts.Store.SetRefreshToken(ctx, id.User, refresh); err != nil {
		h.fail(w, r, err)
		return
	}
	h.startSession(w, r, id.User)
}

// identify redeems code and names the mailbox its access token is for.
func (h *Handler) identify(ctx context.Context, r *http.Request, code, verifier string) (auth.Identity, string, error) {
	if code == "" {
		return auth.Identity{}, "", errStaleSignIn
	}
	t, err := h.opts.Provider.Exchange(ctx, code, verifier)
	if err != nil {
		return auth.Identity{}, "", err
	}
	if t.Refresh == "" {
		return auth.Identity{}, "", errNoRefreshToken
	}
	id, err := h.opts.Authenticator.Authenticate(ctx, auth.Credentials{Mechanism: "PAGE", Token: t.Access, RemoteAddr: r.RemoteAddr})
	if refused(err) {
		return auth.Identity{}, "", fmt.Errorf("%w: %w", errNotVouched, err)
	}
	if err != nil { // the validator could not ask the provider: temporary
		return auth.Identity{}, "", err
	}
	return id, t.Refresh, nil
}

// startSession ends the browser's previous session, if any, and starts a
// new one under a new id (no fixation).
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, user string) {
	ctx := r.Context()
	if old := h.cookie(r, sessionCookie); old != "" {
		if err := h.opts.Store.EndSession(ctx, old); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	id, _, err := h.opts.Store.CreateSession(ctx, user, SessionLifetime)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.setCookie(w, sessionCookie, id, int(SessionLifetime.Seconds()))
	h.log.Info("app passwords page: signed in", "user", user, "remote", r.RemoteAddr)
	http.Redirect(w, r, h.root, http.StatusSeeOther)
}

// signOut ends the session, or with "everywhere" all of the user's.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, s signedIn) {
	everywhere := r.PostFormValue("everywhere") != ""
	var err error
	if everywhere {
		_, err = h.opts.Store.EndSessions(r.Context(), s.User)
	} else {
		err = h.opts.Store.EndSession(r.Context(), s.id)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.setCookie(w, sessionCookie, "", -1)
	h.log.Info("app passwords page: signed out", "user", s.User, "everywhere", everywhere, "remote", r.RemoteAddr)
	http.Redirect(w, r, h.root+"?signed-out", http.StatusSeeOther)
}
