package auth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// Transport deadlines for calls to the identity provider. Each validator
// also bounds the whole request with its own timeout.
const (
	providerDialTimeout     = 5 * time.Second
	providerTLSTimeout      = 5 * time.Second
	providerHeaderTimeout   = 10 * time.Second
	providerIdleConnTimeout = 90 * time.Second
)

// NewHTTPClient returns an HTTP client for talking to the identity provider:
// TLS 1.2 or newer, the system roots plus the PEM certificates in caFile
// (if not empty), bounded dial/handshake/header times, and no redirects
// (a 3xx answer is returned as is, which validators treat as unavailable).
func NewHTTPClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("auth: reading CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("auth: no PEM certificates in CA file %s", caFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: providerDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    providerTLSTimeout,
		ResponseHeaderTimeout:  providerHeaderTimeout,
		IdleConnTimeout:        providerIdleConnTimeout,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: 64 << 10,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}
