package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailgate/mailgate/internal/testenv"
)

// chromiumActionTimeout bounds each step a test runs in the browser.
const chromiumActionTimeout = 20 * time.Second

// browserDo runs actions with a timeout, failing t.
func browserDo(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// browserText returns the text of the element with the id.
func browserText(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
	if err != nil {
		t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// formServer serves a page whose inline script changes #status, with a
// form posting "field" to /submit; the answer page has a script too. It
// records the values posted.
type formServer struct {
	*httptest.Server
	mu     sync.Mutex
	posted []string
}

const scriptedPage = `<!doctype html><html><head><title>%s</title></head><body>
<p id="status">static</p>
<script>document.getElementById("status").textContent = "scripted";</script>
<noscript><p id="noscript">no script</p></noscript>
%s
</body></html>`

func newFormServer(t *testing.T) *formServer {
	s := &formServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, scriptedPage, "form", `<form method="post" action="/submit">
<input id="field" name="field" type="text">
<button id="send" type="submit">Send</button>
</form>`)
	})
	mux.HandleFunc("POST /submit", func(w http.ResponseWriter, r *http.Request) {
		v := r.PostFormValue("field")
		s.mu.Lock()
		s.posted = append(s.posted, v)
		s.mu.Unlock()
		fmt.Fprintf(w, scriptedPage, "answer", `<p id="result">got `+html.EscapeString(v)+`</p>`)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *formServer) Posted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.posted...)
}

// TestChromiumJavaScript: with the zero BrowserOptions the page's script
// runs; with NoJavaScript it does not (also after a navigation), and a form
// still posts its field on a click of the submit button, the browser landing
// on the answer. Host names other than localhost do not resolve, and the
// cleanup leaves no browser process behind.
func TestChromiumJavaScript(t *testing.T) {
	testenv.RequireChromium(t)
	srv := newFormServer(t)
	var pids []int
	browser := func(t *testing.T, opts testenv.BrowserOptions) context.Context {
		ctx := testenv.NewBrowser(t, opts)
		pids = append(pids, chromedp.FromContext(ctx).Browser.Process().Pid)
		return ctx
	}

	t.Run("on", func(t *testing.T) {
		ctx := browser(t, testenv.BrowserOptions{})
		browserDo(t, ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("send")))
		if got := browserText(t, ctx, "status"); got != "scripted" {
			t.Fatalf("#status = %q with JavaScript on; want the script's %q", got, "scripted")
		}
		nctx, ncancel := context.WithTimeout(ctx, chromiumActionTimeout)
		defer ncancel()
		if n, err := chromedp.Run(nctx, chromedp.Evaluate[int](`document.querySelectorAll("#noscript").length`)); err != nil || n != 0 {
			t.Fatalf("<noscript> content parsed into %d elements, %v, with JavaScript on; want none", n, err)
		}
		// Only loopback names resolve.
		lctx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
		defer cancel()
		err := chromedp.Do(lctx, chromedp.Navigate("http://example.com/"))
		var le *chromedp.LoadError
		if !errors.As(err, &le) || le.ErrorText != "net::ERR_NAME_NOT_RESOLVED" {
			t.Fatalf("navigate to example.com: %v; want net::ERR_NAME_NOT_RESOLVED", err)
		}
		u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
		browserDo(t, ctx, chromedp.Navigate(u+"/"), chromedp.WaitVisible(chromedp.ID("send")))
	})

	t.Run("off", func(t *testing.T) {
		ctx := browser(t, testenv.BrowserOptions{NoJavaScript: true})
		browserDo(t, ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("send")))
		if got := browserText(t, ctx, "status"); got != "static" {
			t.Fatalf("#status = %q with JavaScript off; want %q", got, "static")
		}
		browserDo(t, ctx, chromedp.WaitVisible(chromedp.ID("noscript"))) // shown, as to a user without JavaScript
		browserDo(t, ctx, chromedp.SendKeys(chromedp.ID("field"), "hello world"))
		rctx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
		defer cancel()
		resp, err := chromedp.RunResponse(rctx, chromedp.Click(chromedp.ID("send")))
		if err != nil {
			t.Fatalf("click submit: %v", err)
		}
		if resp.Status != http.StatusOK || !strings.HasSuffix(resp.URL, "/submit") {
			t.Fatalf("after the click: status %d at %s; want 200 at /submit", resp.Status, resp.URL)
		}
		browserDo(t, ctx, chromedp.WaitVisible(chromedp.ID("result")))
		if got := browserText(t, ctx, "result"); got != "got hello world" {
			t.Fatalf("answer page #result = %q", got)
		}
		if got := srv.Posted(); len(got) != 1 || got[0] != "hello world" {
			t.Fatalf("server got posts %q; want one with field=hello world", got)
		}
		if got := browserText(t, ctx, "status"); got != "static" {
			t.Fatalf("answer page #status = %q: scripts ran after a navigation", got)
		}
	})

	// The subtests' cleanups have run: their browsers must be gone (zombies
	// waiting for init to reap them are gone enough).
	for _, pid := range pids {
		if live := liveInGroup(pid); len(live) > 0 {
			t.Errorf("browser process group %d still has live processes after the cleanup: %v", pid, live)
		}
	}
}

// liveInGroup lists the processes of process group pgid that are not zombies.
func liveInGroup(pgid int) []string {
	entries, _ := os.ReadDir("/proc")
	var live []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		i := bytes.LastIndexByte(stat, ')')
		if err != nil || i < 0 {
			continue
		}
		// pid (comm) state ppid pgrp ...
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			live = append(live, e.Name()+" "+string(stat[:i+1]))
		}
	}
	return live
}

// TestChromiumSecureCookie: over https with the harness's kind of test
// certificate, a cookie set with Secure, HttpOnly and SameSite=Lax is sent
// back on the next request and is invisible to scripts; without
// IgnoreCertErrors the page does not load.
func TestChromiumSecureCookie(t *testing.T) {
	testenv.RequireChromium(t)
	var mu sync.Mutex
	var seen []string // Cookie headers of /check
	mux := http.NewServeMux()
	mux.HandleFunc("GET /set", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "s3cr3t", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		fmt.Fprint(w, `<!doctype html><title>set</title><a id="next" href="/check">next</a>`)
	})
	mux.HandleFunc("GET /check", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Cookie"))
		mu.Unlock()
		v := ""
		if c, err := r.Cookie("sid"); err == nil {
			v = c.Value
		}
		fmt.Fprintf(w, `<!doctype html><title>check</title><p id="cookie">sid=%s</p>`, html.EscapeString(v))
	})
	srv := httptest.NewUnstartedServer(mux)
	// Quiet about the handshakes the verifying browser aborts.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("TLS server at %s", srv.URL)
	}

	t.Run("verified", func(t *testing.T) {
		ctx := testenv.NewBrowser(t, testenv.BrowserOptions{})
		lctx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
		defer cancel()
		err := chromedp.Do(lctx, chromedp.Navigate(srv.URL+"/set"))
		var le *chromedp.LoadError
		if !errors.As(err, &le) || !strings.HasPrefix(le.ErrorText, "net::ERR_CERT_") {
			t.Fatalf("navigate to a test certificate without IgnoreCertErrors: %v; want a net::ERR_CERT_ error", err)
		}
	})

	t.Run("ignored", func(t *testing.T) {
		ctx := testenv.NewBrowser(t, testenv.BrowserOptions{IgnoreCertErrors: true})
		browserDo(t, ctx, chromedp.Navigate(srv.URL+"/set"), chromedp.WaitVisible(chromedp.ID("next")))
		ectx, cancel := context.WithTimeout(ctx, chromiumActionTimeout)
		defer cancel()
		if js, err := chromedp.Run(ectx, chromedp.Evaluate[string](`document.cookie`)); err != nil || js != "" {
			t.Fatalf("document.cookie = %q, %v; want the HttpOnly cookie hidden", js, err)
		}
		resp, err := chromedp.RunResponse(ectx, chromedp.Click(chromedp.ID("next")))
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("click to /check: %v, %v", resp, err)
		}
		browserDo(t, ctx, chromedp.WaitVisible(chromedp.ID("cookie")))
		if got := browserText(t, ctx, "cookie"); got != "sid=s3cr3t" {
			t.Fatalf("/check saw %q", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 1 || seen[0] != "sid=s3cr3t" {
			t.Fatalf("Cookie headers of /check: %q; want one sid=s3cr3t", seen)
		}
	})
}
