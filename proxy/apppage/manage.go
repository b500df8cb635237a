package apppage

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mailgate/mailgate/auth/apppass"
)

// index is the list of the signed-in user's app passwords with the form
// to make one, or the sign-in page.
func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	s, ok, err := h.session(ctx, r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !ok {
		msg := ""
		if r.URL.Query().Has("signed-out") {
			msg = "You are signed out."
		}
		h.render(w, http.StatusOK, "signin", h.page(messagePage{Message: msg, SignIn: true}))
		return
	}
	recs, err := h.opts.Store.List(ctx, s.User)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	link, err := h.opts.Store.LinkStatus(ctx, s.User)
	if err != nil && !errors.Is(err, apppass.ErrNoLink) { // no link: made by the operator
		h.fail(w, r, err)
		return
	}
	v := h.listPage(s, recs, notice(r))
	if !link.Suspended.IsZero() {
		v.Suspended = stamp(link.Suspended)
	}
	h.render(w, http.StatusOK, "list", v)
}

// notice is the sentence for the result of the POST that redirected here.
func notice(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case q.Has("revoked"):
		return "The app password was revoked. Apps using it can no longer sign in."
	case q.Has("revoked-all"):
		n, _ := strconv.Atoi(q.Get("revoked-all"))
		return strconv.Itoa(n) + " app passwords were revoked."
	}
	return ""
}

// create makes an app password and shows it, once.
func (h *Handler) create(w http.ResponseWriter, r *http.Request, s signedIn) {
	var protos []apppass.Protocol
	for _, v := range r.PostForm["protocol"] {
		p, err := apppass.ParseProtocol(v)
		if err != nil {
			h.fail(w, r, errBadForm)
			return
		}
		protos = append(protos, p)
	}
	expiry, err := parseExpiry(r.PostFormValue("expiry"))
	if err != nil || len(protos) == 0 {
		h.fail(w, r, errBadForm)
		return
	}
	pw, rec, err := h.opts.Store.Create(r.Context(), s.User, r.PostFormValue("name"), protos, expiry)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("app passwords page: created", "user", s.User, "id", rec.ID, "protocols", rec.Protocols, "remote", r.RemoteAddr)
	h.render(w, http.StatusOK, "created", h.createdPage(s, rec, pw))
}

// parseExpiry reads the form's lifetime in days ("" or "0": the default).
func parseExpiry(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	days, err := strconv.Atoi(v)
	if err != nil || days < 0 || days > 3660 {
		return 0, errBadForm
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, s signedIn) {
	id := r.PostFormValue("id")
	if err := h.opts.Store.Revoke(r.Context(), s.User, id); err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("app passwords page: revoked", "user", s.User, "id", id, "remote", r.RemoteAddr)
	http.Redirect(w, r, h.root+"?revoked", http.StatusSeeOther)
}

func (h *Handler) revokeAll(w http.ResponseWriter, r *http.Request, s signedIn) {
	n, err := h.opts.Store.RevokeAll(r.Context(), s.User)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.log.Info("app passwords page: revoked all", "user", s.User, "count", n, "remote", r.RemoteAddr)
	http.Redirect(w, r, h.root+"?revoked-all="+strconv.Itoa(n), http.StatusSeeOther)
}
