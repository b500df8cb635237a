package rig

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/internal/testenv"
)

// Counter is a reverse proxy in front of the OpenID provider that counts
// the requests for one path (the userinfo endpoint). Close stops it.
type Counter struct {
	URL  string // http://127.0.0.1:port, no trailing slash
	path string
	n    atomic.Int64
	srv  *http.Server
}

// NewCounter proxies everything to target and counts the requests for path.
func NewCounter(target, path string) (*Counter, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	c := &Counter{URL: "http://" + ln.Addr().String(), path: path}
	c.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == c.path {
				c.n.Add(1)
			}
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go c.srv.Serve(ln)
	return c, nil
}

// Count is the number of requests for the counted path so far.
func (c *Counter) Count() int64 { return c.n.Load() }

// Close stops the proxy.
func (c *Counter) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.srv.Shutdown(ctx)
}

// AuthHTTP is nginx's auth_http server: it checks the user's password and
// answers with a Dovecot master login (Auth-User: user*master) to Backend.
type AuthHTTP struct {
	Addr string // 127.0.0.1:port, for nginx's auth_http directive

	backendHost, backendPort string
	masterUser, masterPass   string
	passwords                map[string]string
	n                        atomic.Int64
	srv                      *http.Server
}

// NewAuthHTTP starts the handler. backend is Dovecot's plain IMAP address.
func NewAuthHTTP(backend, masterUser, masterPass string, users []testenv.User) (*AuthHTTP, error) {
	host, port, err := net.SplitHostPort(backend)
	if err != nil {
		return nil, err
	}
	if _, err := strconv.Atoi(port); err != nil {
		return nil, errors.New("auth_http: backend port is not a number")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &AuthHTTP{
		Addr:        ln.Addr().String(),
		backendHost: host, backendPort: port,
		masterUser: masterUser, masterPass: masterPass,
		passwords: make(map[string]string, len(users)),
	}
	for _, u := range users {
		a.passwords[u.Name] = u.Password
	}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

// ServeHTTP answers one auth_http request. nginx URL-escapes Auth-User and
// Auth-Pass.
func (a *AuthHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.n.Add(1)
	user, err1 := url.PathUnescape(r.Header.Get("Auth-User"))
	pass, err2 := url.PathUnescape(r.Header.Get("Auth-Pass"))
	want, ok := a.passwords[strings.ToLower(user)]
	if err1 != nil || err2 != nil || !ok || want != pass {
		w.Header().Set("Auth-Status", "Invalid login or password")
		w.Header().Set("Auth-Wait", "3")
		return
	}
	w.Header().Set("Auth-Status", "OK")
	w.Header().Set("Auth-Server", a.backendHost)
	w.Header().Set("Auth-Port", a.backendPort)
	w.Header().Set("Auth-User", user+"*"+a.masterUser)
	w.Header().Set("Auth-Pass", a.masterPass)
}

// Count is the number of auth_http requests so far.
func (a *AuthHTTP) Count() int64 { return a.n.Load() }

// Close stops the handler.
func (a *AuthHTTP) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}
