package discovery

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// newTestServer serves NewHandler over a real listener on 127.0.0.1; the
// site can be swapped through the returned pointer.
func newTestServer(t *testing.T, site Site) (*httptest.Server, *atomic.Pointer[Site]) {
	t.Helper()
	var cur atomic.Pointer[Site]
	cur.Store(&site)
	srv := httptest.NewServer(NewHandler(func() Site { return *cur.Load() }, HandlerOptions{}))
	t.Cleanup(srv.Close)
	return srv, &cur
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; host, when set, replaces the Host header.
func do(t *testing.T, method, u, host string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func (r reply) check(t *testing.T, status int, contentType string) {
	t.Helper()
	if r.status != status || !strings.HasPrefix(r.header.Get("Content-Type"), contentType) {
		t.Errorf("status %d, Content-Type %q; want %d, %q\n%s", r.status, r.header.Get("Content-Type"), status, contentType, r.body)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

func TestHandlerRoutes(t *testing.T) {
	srv, _ := newTestServer(t, oauthSite())
	q := "?emailaddress=" + url.QueryEscape("fred@example.org")
	for _, tt := range []struct {
		method, path, ctype, cache string
	}{
		{"GET", autoconfigPath, "text/xml", "public, max-age=3600"},
		{"GET", autoconfigWellKnownPath + q, "text/xml", "public, max-age=3600"},
		{"GET", autodiscoverPath + q, "text/xml", "no-store"},
		{"GET", "/Autodiscover/Autodiscover.xml" + q, "text/xml", "no-store"},
		{"GET", paccPath, "application/json", "public, max-age=3600"},
		{"GET", paccPathShort, "application/json", "public, max-age=3600"},
		{"HEAD", autoconfigPath, "text/xml", "public, max-age=3600"},
	} {
		r := do(t, tt.method, srv.URL+tt.path, "", nil)
		r.check(t, http.StatusOK, tt.ctype)
		if got := r.header.Get("Cache-Control"); got != tt.cache {
			t.Errorf("%s %s: Cache-Control %q, want %q", tt.method, tt.path, got, tt.cache)
		}
	}
	for _, tt := range []struct{ method, path string }{
		{"POST", autoconfigPath},
		{"PUT", autodiscoverPath},
		{"DELETE", paccPath},
		{"POST", mobileconfigPath},
	} {
		if r := do(t, tt.method, srv.URL+tt.path, "", nil); r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d, want 405", tt.method, tt.path, r.status)
		}
	}
	if r := do(t, "GET", srv.URL+"/mail/other.xml", "", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown path: status %d", r.status)
	}
}

// TestHandlerDomain: the domain comes from ?emailaddress=, else the Host.
func TestHandlerDomain(t *testing.T) {
	srv, _ := newTestServer(t, oauthSite())
	id := func(r reply) string { return decodeAutoconfig(t, r.body).Provider.ID }
	if r := do(t, "GET", srv.URL+autoconfigPath+"?emailaddress=fred%40EXAMPLE.ORG", "", nil); id(r) != "example.org" {
		t.Errorf("emailaddress: id %q", id(r))
	}
	if r := do(t, "GET", srv.URL+autoconfigPath, "autoconfig.example.org", nil); id(r) != "example.org" {
		t.Errorf("Host autoconfig.example.org: id %q", id(r))
	}
	if r := do(t, "GET", srv.URL+autoconfigWellKnownPath, "example.org", nil); id(r) != "example.org" {
		t.Errorf("Host example.org: id %q", id(r))
	}
	if r := do(t, "GET", srv.URL+autoconfigPath, "", nil); id(r) != "example.com" {
		t.Errorf("Host 127.0.0.1: id %q, want the first domain", id(r))
	}
	for _, path := range []string{autoconfigPath, paccPath, mobileconfigPath, autodiscoverPath} {
		for _, addr := range []string{"fred@example.net", "fred", "a@b@example.com", "<script>@example.com"} {
			r := do(t, "GET", srv.URL+path+"?emailaddress="+url.QueryEscape(addr), "", nil)
			r.check(t, http.StatusNotFound, "text/plain")
			if string(r.body) != "unknown mail domain\n" {
				t.Errorf("%s %q: body %q", path, addr, r.body)
			}
		}
	}
}

func TestHandlerAutodiscover(t *testing.T) {
	srv, _ := newTestServer(t, passwordSite())
	post := func(body string) reply {
		return do(t, "POST", srv.URL+"/AutoDiscover/AutoDiscover.xml", "", strings.NewReader(body))
	}
	r := post(adRequestBody("fred@Example.Org", nsOutlookSchema))
	r.check(t, http.StatusOK, "text/xml")
	ps := decodeAutodiscover(t, r.body).Response.Account.Protocols
	if len(ps) != 5 || ps[0].LoginName != "fred@example.org" {
		t.Errorf("protocols = %+v", ps)
	}
	for body, code := range map[string]int{
		"not xml": adInvalidRequest,
		adRequestBody("fred@example.org", "urn:mobilesync"): adProviderUnavailable,
	} {
		r := post(body)
		r.check(t, http.StatusOK, "text/xml")
		if e := decodeAutodiscover(t, r.body).Response.Error; e == nil || e.Code != code {
			t.Errorf("error = %+v, want code %d", e, code)
		}
	}
	r = do(t, "GET", srv.URL+autodiscoverPath, "", nil) // the browser check
	if e := decodeAutodiscover(t, r.body).Response.Error; e == nil || e.Code != adInvalidRequest {
		t.Errorf("GET without emailaddress: %s", r.body)
	}
	if r := post(adRequestBody("fred@example.net", nsOutlookSchema)); r.status != http.StatusNotFound {
		t.Errorf("unknown domain: status %d", r.status)
	}
}

// TestHandlerAutodiscoverBodyCap: a body over 64 KiB is refused, whether
// its length is announced or not.
func TestHandlerAutodiscoverBodyCap(t *testing.T) {
	srv, _ := newTestServer(t, passwordSite())
	big := adRequestBody("fred@example.org", nsOutlookSchema) + strings.Repeat(" ", maxAutodiscoverB)
	r := do(t, "POST", srv.URL+autodiscoverPath, "", strings.NewReader(big))
	r.check(t, http.StatusRequestEntityTooLarge, "text/plain")
	chunked := io.MultiReader(strings.NewReader(big)) // no Content-Length: sent chunked
	r = do(t, "POST", srv.URL+autodiscoverPath, "", chunked)
	r.check(t, http.StatusRequestEntityTooLarge, "text/plain")
	exact := adRequestBody("fred@example.org", nsOutlookSchema)
	exact += strings.Repeat(" ", maxAutodiscoverB-len(exact))
	do(t, "POST", srv.URL+autodiscoverPath, "", io.MultiReader(strings.NewReader(exact))).check(t, http.StatusOK, "text/xml")
}

func TestHandlerMobileconfig(t *testing.T) {
	srv, cur := newTestServer(t, passwordSite())
	u := srv.URL + mobileconfigPath + "?emailaddress=" + url.QueryEscape("fred@example.org")
	r := do(t, "GET", u, "", nil)
	r.check(t, http.StatusOK, "application/x-apple-aspen-config")
	if mail := decodePlist(t, r.body)["PayloadContent"].([]any)[0].(map[string]any); mail["EmailAddress"] != "fred@example.org" {
		t.Errorf("EmailAddress = %v", mail["EmailAddress"])
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	do(t, "GET", srv.URL+mobileconfigPath, "", nil).check(t, http.StatusBadRequest, "text/plain")
	site := oauthSite()
	cur.Store(&site) // a reload: SMTP now takes no password
	r = do(t, "GET", u, "", nil)
	r.check(t, http.StatusNotFound, "text/plain")
	if want := errNoPasswordAccount.Error() + "\n"; string(r.body) != want || bytes.Count(r.body, []byte("\n")) != 1 {
		t.Errorf("body %q, want %q", r.body, want)
	}
}

// TestHandlerPACCDigest: the TXT record DNSRecords computes vouches for the
// bytes served, for every domain's host.
func TestHandlerPACCDigest(t *testing.T) {
	site := oauthSite()
	srv, _ := newTestServer(t, site)
	recs := DNSRecords(site, WebEndpoint{Host: "mail.example.com"})
	for _, d := range site.Domains {
		r := do(t, "GET", srv.URL+paccPath, "ua-auto-config."+d, nil)
		r.check(t, http.StatusOK, "application/json")
		txt := Record{Name: "_ua-auto-config." + d + ".", Type: "TXT", Value: paccDigestRecord(r.body)}
		if !hasRecord(recs, txt) {
			t.Errorf("%s: no TXT record matches the served document", d)
		}
	}
	site.Servers = site.Servers[1:2] // IMAP on 143 only: no document
	srv2, _ := newTestServer(t, site)
	do(t, "GET", srv2.URL+paccPath, "", nil).check(t, http.StatusNotFound, "text/plain")
}

// TestHandlerNoEcho: a refused request's input never comes back.
func TestHandlerNoEcho(t *testing.T) {
	srv, _ := newTestServer(t, passwordSite())
	evil := "<script>alert(1)</script>"
	for _, r := range []reply{
		do(t, "GET", srv.URL+autoconfigPath+"?emailaddress="+url.QueryEscape(evil+"@example.com"), "", nil),
		do(t, "POST", srv.URL+autodiscoverPath, "", strings.NewReader(adRequestBody("x"+evil, nsOutlookSchema))),
		do(t, "POST", srv.URL+autodiscoverPath, "", strings.NewReader(evil)),
		do(t, "GET", srv.URL+autoconfigPath, evil, nil),
	} {
		if bytes.Contains(r.body, []byte("script")) {
			t.Errorf("status %d echoes the input: %s", r.status, r.body)
		}
	}
}

func TestHandlerOptionsCache(t *testing.T) {
	for _, tt := range []struct {
		o    HandlerOptions
		want string
	}{
		{HandlerOptions{}, "public, max-age=3600"},
		{HandlerOptions{MaxAge: 90e9}, "public, max-age=90"},
		{HandlerOptions{MaxAge: -1}, "no-store"},
	} {
		if got := tt.o.cacheControl(); got != tt.want {
			t.Errorf("cacheControl(%v) = %q, want %q", tt.o.MaxAge, got, tt.want)
		}
	}
}

// TestPendingOAuthNotCached: while the provider's endpoints are not known,
// autoconfig and PACC go out uncached (no client or cache keeps the
// password-only document); a site without any usable IMAP/POP3 server gets
// 404, not an empty document.
func TestPendingOAuthNotCached(t *testing.T) {
	site := oauthSite()
	site.OAuth, site.OAuthPending = nil, true
	srv := httptest.NewServer(NewHandler(func() Site { return site }, HandlerOptions{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/mail/config-v1.1.xml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); resp.StatusCode != http.StatusOK || cc != "no-store" {
		t.Errorf("pending: %d, Cache-Control %q; want 200, no-store", resp.StatusCode, cc)
	}
	site = Site{Domains: []string{"example.org"}, Servers: []Server{{Protocol: IMAP, Host: "mail.example.org", Port: 993, Security: ImplicitTLS}}}
	resp, err = srv.Client().Get(srv.URL + "/mail/config-v1.1.xml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("no usable server: %d, want 404", resp.StatusCode)
	}
}
