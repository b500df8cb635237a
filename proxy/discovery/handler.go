package discovery

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HandlerOptions configures [NewHandler]. The zero value is ready to use.
type HandlerOptions struct {
	// Log gets a debug line per refused request (the reason, never request
	// data) and an error line per document that could not be built.
	// Nil: slog.Default().
	Log *slog.Logger
	// MaxAge is how long clients and shared caches may keep the documents
	// that do not depend on the address (autoconfig, PACC). Zero:
	// DefaultMaxAge. Negative: not at all. Documents that carry the address
	// (Autodiscover, the Apple profile) and refusals are never stored.
	MaxAge time.Duration
}

// DefaultMaxAge is the cache lifetime of the address-independent documents.
const DefaultMaxAge = time.Hour

func (o HandlerOptions) logger() *slog.Logger {
	if o.Log == nil {
		return slog.Default()
	}
	return o.Log
}

func (o HandlerOptions) cacheControl() string {
	switch {
	case o.MaxAge < 0:
		return cacheNoStore
	case o.MaxAge == 0:
		o.MaxAge = DefaultMaxAge
	}
	return "public, max-age=" + strconv.Itoa(int(o.MaxAge/time.Second))
}

// Response header values.
const (
	cacheNoStore        = "no-store"
	contentXML          = "text/xml; charset=utf-8"
	contentJSON         = "application/json"
	contentMobileconfig = "application/x-apple-aspen-config"
	contentText         = "text/plain; charset=utf-8"
)

// Refusals: fixed one-line texts, the only thing a refused client reads.
const (
	msgUnknownDomain   = "unknown mail domain"
	msgAddressRequired = "emailaddress required"
	msgTooLarge        = "request too large"
	msgInternal        = "internal error"
)

type handler struct {
	site  func() Site
	log   *slog.Logger
	cache string // Cache-Control of the address-independent documents
	mux   *http.ServeMux
}

// NewHandler serves the documents of site (not nil), which it calls once per
// request so that a reload can swap the site:
//
//	GET       /mail/config-v1.1.xml                         Thunderbird autoconfig
//	GET       /.well-known/autoconfig/mail/config-v1.1.xml  the same
//	POST, GET /autodiscover/autodiscover.xml                Outlook Autodiscover (any case)
//	GET       /mail/mailgate.mobileconfig?emailaddress=     Apple profile (passwords only)
//	GET       /.well-known/user-agent-configuration.json    PACC
//	GET       /.well-known/user-agent-configuration         the same
//
// The mail domain comes from ?emailaddress= (or Autodiscover's EMailAddress):
// one "@" and a domain of the site, else 404 "unknown mail domain". Without
// it, autoconfig and PACC take the domain from the Host header
// (autoconfig.<domain>, ua-auto-config.<domain> or <domain>), else the first
// domain. Other methods get 405, other paths 404.
func NewHandler(site func() Site, opts HandlerOptions) http.Handler {
	h := &handler{site: site, log: opts.logger(), cache: opts.cacheControl(), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+autoconfigPath, h.autoconfig)
	h.mux.HandleFunc("GET "+autoconfigWellKnownPath, h.autoconfig)
	h.mux.HandleFunc("GET "+autodiscoverPath, h.autodiscover)
	h.mux.HandleFunc("POST "+autodiscoverPath, h.autodiscover)
	h.mux.HandleFunc("GET "+mobileconfigPath, h.mobileconfig)
	h.mux.HandleFunc("GET "+paccPath, h.pacc)
	h.mux.HandleFunc("GET "+paccPathShort, h.pacc)
	return h
}

// ServeHTTP routes r, after folding the case of the Autodiscover path.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path != autodiscoverPath && strings.EqualFold(r.URL.Path, autodiscoverPath) {
		u := *r.URL
		u.Path, u.RawPath = autodiscoverPath, ""
		r = r.Clone(r.Context())
		r.URL = &u
	}
	h.mux.ServeHTTP(w, r)
}

// requestDomain is the domain of ?emailaddress= when the query has one,
// else the one Host names (see Site.hostDomain).
func requestDomain(site Site, r *http.Request, hostPrefix string) (string, bool) {
	if q := r.URL.Query(); q.Has("emailaddress") {
		a, ok := site.address(q.Get("emailaddress"))
		return a.Domain, ok
	}
	return site.hostDomain(r.Host, hostPrefix)
}

// send writes a document with status 200.
func (h *handler) send(w http.ResponseWriter, contentType, cache string, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Cache-Control", cache)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // a client that went away is not our concern
}

// refuse writes msg, a fixed line, with status.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.log.Debug("discovery: request refused", "route", r.Pattern, "status", status, "reason", msg, "remote", r.RemoteAddr)
	hd := w.Header()
	hd.Set("Content-Type", contentText)
	hd.Set("Cache-Control", cacheNoStore)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// fail answers 500 for a document that could not be built, and logs why.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("discovery: document not built", "route", r.Pattern, "err", err)
	h.refuse(w, r, http.StatusInternalServerError, msgInternal)
}

// absent answers 404 with err's text when err is one of reasons (a document
// the site cannot have), else 500; it reports whether err was nil.
func (h *handler) absent(w http.ResponseWriter, r *http.Request, err error, reasons ...error) bool {
	if err == nil {
		return true
	}
	for _, reason := range reasons {
		if errors.Is(err, reason) {
			h.refuse(w, r, http.StatusNotFound, reason.Error())
			return false
		}
	}
	h.fail(w, r, err)
	return false
}
