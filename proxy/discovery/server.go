package discovery

import (
	"log/slog"
	"net/http"
	"time"
)

// Limits of the public discovery listener. Every client is a stranger on the
// internet; a slow one is cut off rather than allowed to hold a connection.
const (
	// serverReadHeaderTimeout bounds the request line and headers (and, on
	// HTTPS, the TLS handshake before them).
	serverReadHeaderTimeout = 5 * time.Second
	// serverReadTimeout bounds the whole request, body included (an
	// Autodiscover body is at most 64 KiB).
	serverReadTimeout = 10 * time.Second
	// serverWriteTimeout bounds the response; documents are a few KiB.
	serverWriteTimeout = 15 * time.Second
	// serverIdleTimeout bounds a kept-alive connection between requests:
	// short, since an idle connection holds one of the listener's few
	// descriptors (see LimitListener) and a client needs two or three
	// requests at most.
	serverIdleTimeout = 5 * time.Second
	// serverMaxHeaderBytes caps the request line and headers.
	serverMaxHeaderBytes = 16 << 10
)

// NewServer returns an http.Server for h with the timeouts and header cap a
// public listener needs. The caller sets Addr and TLSConfig and runs it.
// The server's own messages (TLS handshake failures, mostly from scanners)
// go to log at debug level; nil log: slog.Default().
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            serverReadHeaderTimeout,
		ReadTimeout:                  serverReadTimeout,
		WriteTimeout:                 serverWriteTimeout,
		IdleTimeout:                  serverIdleTimeout,
		MaxHeaderBytes:               serverMaxHeaderBytes,
		DisableGeneralOptionsHandler: true, // "OPTIONS *" goes to h, which refuses it
		ErrorLog:                     slog.NewLogLogger(log.With("component", "discovery").Handler(), slog.LevelDebug),
	}
}
