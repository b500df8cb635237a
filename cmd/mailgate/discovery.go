package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/mailgate/auth"
	"github.com/mailgate/mailgate/config"
	"github.com/mailgate/mailgate/proxy/discovery"
	"github.com/mailgate/mailgate/proxy/discovery/tbaddon"
)

// The public discovery listener (discovery.listen): the onboarding documents
// of one discovery.Site, rebuilt on reload and when the provider's OpenID
// configuration has been read.

const (
	// metadataRefresh is how often the provider's endpoints are read again.
	metadataRefresh = time.Hour
	// metadataRetry is the wait after a failed read; until one succeeds the
	// documents publish no OAuth block (logged).
	metadataRetry = 30 * time.Second
	// discoveryMaxConns caps the discovery listener's connections, within
	// fdHeadroom.
	discoveryMaxConns = fdHeadroom / 4
)

type discoveryServer struct {
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
	site atomic.Pointer[discovery.Site]
	// addon is the Thunderbird add-on of site (nil: none, no OAuth yet),
	// built with it, for the app-password page to offer.
	addon atomic.Pointer[[]byte]

	// cfg and meta build the site; both are replaced, never changed, and
	// rebuildMu makes each site from one pair.
	cfg       atomic.Pointer[config.Config]
	meta      atomic.Pointer[auth.Metadata]
	rebuildMu sync.Mutex
	addrOf    func(key string) string
	// reread wakes the metadata reader after a reload (the issuer or the
	// client may have changed).
	reread chan struct{}
}

// newDiscoveryServer opens discovery.listen (with TLS from tlsConf unless
// discovery.tls is false). addrOf gives the client listeners' bound
// addresses.
func newDiscoveryServer(cfg *config.Config, tlsConf *tls.Config, addrOf func(string) string, log *slog.Logger) (*discoveryServer, error) {
	ln, err := publicListener("discovery.listen", cfg.Discovery.Listen, cfg.Discovery.TLS, tlsConf)
	if err != nil {
		return nil, err
	}
	d := &discoveryServer{ln: ln, log: log, addrOf: addrOf, reread: make(chan struct{}, 1)}
	snapshot := *cfg // reloads change the app's; this one is read from other goroutines
	d.cfg.Store(&snapshot)
	if err := d.rebuild(); err != nil {
		ln.Close()
		return nil, err
	}
	d.srv = discovery.NewServer(discovery.NewHandler(d.currentSite, discovery.HandlerOptions{Log: log}), log)
	return d, nil
}

func (d *discoveryServer) currentSite() discovery.Site { return *d.site.Load() }

// rebuild makes the site from the current configuration and metadata.
func (d *discoveryServer) rebuild() error {
	d.rebuildMu.Lock()
	defer d.rebuildMu.Unlock()
	site, err := siteFrom(d.cfg.Load(), d.meta.Load(), d.addrOf)
	if err != nil {
		return err
	}
	d.site.Store(&site)
	d.addon.Store(d.buildAddon(site))
	return nil
}

// buildAddon is site's Thunderbird add-on, or nil when site publishes no
// OAuth client (yet) or it cannot be built (logged).
func (d *discoveryServer) buildAddon(site discovery.Site) *[]byte {
	if site.OAuth == nil {
		return nil
	}
	var b bytes.Buffer
	if err := tbaddon.Build(&b, site, tbaddon.Options{}); err != nil {
		d.log.Warn("discovery: no Thunderbird add-on for the app-password page", "err", err)
		return nil
	}
	xpi := b.Bytes()
	return &xpi
}

// reload takes a new configuration's documents (the listener stays).
func (d *discoveryServer) reload(cfg *config.Config) error {
	old := d.cfg.Swap(cfg)
	if err := d.rebuild(); err != nil {
		d.cfg.Store(old)
		return err
	}
	select {
	case d.reread <- struct{}{}:
	default: // a reread is already due
	}
	return nil
}

// run serves until ctx is done, reading the provider's metadata meanwhile.
func (d *discoveryServer) run(ctx context.Context) {
	go d.refreshMetadata(ctx)
	d.log.Info("discovery listening", "addr", d.ln.Addr().String(), "tls", d.cfg.Load().Discovery.TLS)
	serveUntil(ctx, d.srv, d.ln, d.log, "discovery listener")
}

// publicListener opens a listener meant for the internet (key names it
// in errors), with TLS from tlsConf when on. The mail listeners' caps
// leave fdHeadroom descriptors for everything else; it takes a bounded
// share of them, and a bounded share per client address, except without
// TLS: then a reverse proxy in front is every connection's address.
func publicListener(key, addr string, withTLS bool, tlsConf *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	perIP := discovery.DefaultMaxConnectionsPerIP
	if !withTLS {
		perIP = discoveryMaxConns
	}
	ln = discovery.LimitListener(ln, discoveryMaxConns, perIP)
	if withTLS {
		ln = tls.NewListener(ln, tlsConf)
	}
	return ln, nil
}

// serveUntil serves srv on ln until ctx is done, then gives the requests
// under way 2 s; what names the listener in the log.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger, what string) {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(what+" failed", "err", err)
	}
}

// refreshMetadata reads the provider's endpoints now and every
// metadataRefresh, retrying every metadataRetry after a failure; a failure
// is logged when it starts, not at every retry.
func (d *discoveryServer) refreshMetadata(ctx context.Context) {
	failing := false
	for {
		meta, err := providerMetadata(ctx, d.cfg.Load())
		wait := metadataRefresh
		switch {
		case err != nil:
			wait = metadataRetry
			switch {
			case failing:
			case d.meta.Load() != nil: // the last one read stays published
				d.log.Error("discovery: cannot read the provider's OpenID configuration again; the documents keep the endpoints read before", "err", err)
			default:
				d.log.Error("discovery: cannot read the provider's OpenID configuration; the documents offer no OAuth until it can", "err", err)
			}
			failing = true
		default:
			if failing {
				d.log.Info("discovery: provider's OpenID configuration read; the documents offer OAuth again")
			}
			failing = false
			d.meta.Store(meta)
			if err := d.rebuild(); err != nil {
				d.log.Error("discovery: documents not rebuilt", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.reread:
		case <-time.After(wait):
		}
	}
}
