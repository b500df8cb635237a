package proxy

import (
	"crypto/tls"

	"github.com/mailgate/mailgate/internal/proxytest"
)

type testProxy struct {
	srv       *Server
	plainAddr string // STARTTLS listener
	tlsAddr   string // implicit TLS listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	logs      *proxytest.SyncBuffer
}
