package discovery

import (
	"errors"
	"net/http"
)

// The handlers of [NewHandler]'s routes.

func (h *handler) autoconfig(w http.ResponseWriter, r *http.Request) {
	site := h.site()
	d, ok := requestDomain(site, r, "autoconfig.")
	if !ok {
		h.refuse(w, r, http.StatusNotFound, msgUnknownDomain)
		return
	}
	body, err := autoconfigDocument(site, d)
	if h.absent(w, r, err, errNoAutoconfigServer) {
		h.send(w, contentXML, h.cacheFor(site), body)
	}
}

// cacheFor is the Cache-Control of site's address-independent documents.
func (h *handler) cacheFor(site Site) string {
	if site.OAuthPending {
		return cacheNoStore
	}
	return h.cache
}

func (h *handler) pacc(w http.ResponseWriter, r *http.Request) {
	site := h.site()
	if _, ok := requestDomain(site, r, paccHostPrefix); !ok {
		h.refuse(w, r, http.StatusNotFound, msgUnknownDomain)
		return
	}
	body, err := paccDocument(site)
	if h.absent(w, r, err, errNoPACCServer) {
		h.send(w, contentJSON, h.cacheFor(site), body)
	}
}

func (h *handler) mobileconfig(w http.ResponseWriter, r *http.Request) {
	site := h.site()
	q := r.URL.Query()
	if !q.Has("emailaddress") {
		h.refuse(w, r, http.StatusBadRequest, msgAddressRequired)
		return
	}
	a, ok := site.address(q.Get("emailaddress"))
	if !ok {
		h.refuse(w, r, http.StatusNotFound, msgUnknownDomain)
		return
	}
	body, err := mobileconfigDocument(site, a)
	if h.absent(w, r, err, errNoPasswordAccount) {
		w.Header().Set("Content-Disposition", `attachment; filename="mailgate.mobileconfig"`)
		h.send(w, contentMobileconfig, cacheNoStore, body)
	}
}

// autodiscover answers a POSTed request, or a GET with ?emailaddress=.
// Refused requests get the protocol's error documents with status 200, as
// Exchange sends them; an oversized body gets 413.
func (h *handler) autodiscover(w http.ResponseWriter, r *http.Request) {
	site := h.site()
	raw, err := autodiscoverAddress(w, r)
	switch {
	case errors.Is(err, errRequestTooLarge):
		h.refuse(w, r, http.StatusRequestEntityTooLarge, msgTooLarge)
		return
	case err != nil:
		h.log.Debug("discovery: autodiscover request refused", "err", err, "remote", r.RemoteAddr)
		doc := adInvalidRequestDoc
		if errors.Is(err, errUnsupportedSchema) {
			doc = adProviderUnavailableDoc
		}
		h.send(w, contentXML, cacheNoStore, doc)
		return
	}
	a, ok := site.address(raw)
	if !ok {
		h.refuse(w, r, http.StatusNotFound, msgUnknownDomain)
		return
	}
	body, err := autodiscoverDocument(site, a)
	if h.absent(w, r, err, errNoPasswordServer) {
		h.send(w, contentXML, cacheNoStore, body)
	}
}

// autodiscoverAddress is the address a request asks about: the request
// document for POST, else ?emailaddress= (a GET without it is the browser
// check Exchange answers with "Invalid Request").
func autodiscoverAddress(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.Method != http.MethodPost {
		if q := r.URL.Query(); q.Has("emailaddress") {
			return q.Get("emailaddress"), nil
		}
		return "", errMalformedRequest
	}
	if r.ContentLength > maxAutodiscoverB {
		return "", errRequestTooLarge
	}
	return parseAutodiscoverRequest(http.MaxBytesReader(w, r.Body, maxAutodiscoverB))
}
