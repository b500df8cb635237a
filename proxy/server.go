package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// Server accepts client connections for the protocol fronts (Front).
// One Server can serve any number of listeners.
type Server struct {
	opts   Options
	limits Limits
	log    *slog.Logger
	obs    Observer

	// shutdownCtx ends when Shutdown starts: pre-auth conversations end.
	// drainCtx ends when Shutdown's drain time is up: relayed sessions end.
	shutdownCtx, drainCtx      context.Context
	startShutdown, expireDrain context.CancelFunc

	pools    *pools
	refusal  refusalLog
	tls      tlsConfigs // per-protocol copies of opts.TLSConfig
	problems configProblems
	probers  map[string]Prober // fronts' backend probes, by proto (under mu)

	mu       sync.Mutex
	closing  bool
	conns    map[net.Conn]struct{}
	lns      map[net.Listener]struct{}
	wg       sync.WaitGroup
	shutdown chan struct{} // closed when Shutdown starts
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Authenticator == nil {
		return nil, errors.New("proxy: Options.Authenticator is required")
	}
	if opts.TLSConfig == nil {
		return nil, errors.New("proxy: Options.TLSConfig is required")
	}
	if err := opts.Lifetime.check(); err != nil {
		return nil, err
	}
	if err := opts.Challenge.Check(); err != nil {
		return nil, fmt.Errorf("proxy: Options.Challenge: %w", err)
	}
	if len(opts.ProxyProtocolFrom) > 0 {
		if _, err := proxyproto.PolicyFromRanges(opts.ProxyProtocolFrom, proxyproto.REQUIRE, proxyproto.SKIP); err != nil {
			return nil, fmt.Errorf("proxy: ProxyProtocolFrom: %w", err)
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	obs := opts.Observer
	if obs == nil {
		obs = NopObserver{}
	}
	s := &Server{
		opts:     opts,
		obs:      obs,
		limits:   opts.Limits.withDefaults(),
		log:      log,
		conns:    make(map[net.Conn]struct{}),
		lns:      make(map[net.Listener]struct{}),
		shutdown: make(chan struct{}),
	}
	s.pools = newPools(s.limits)
	s.tls = newTLSConfigs(opts.TLSConfig)
	s.shutdownCtx, s.startShutdown = context.WithCancel(context.Background())
	s.drainCtx, s.expireDrain = context.WithCancel(context.Background())
	return s, nil
}

// ErrServerClosed is returned by the Serve methods after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// connInfo is what a protocol handler gets with an admitted connection.
type connInfo struct {
	id          string // connection id, in every log line
	log         *slog.Logger
	implicitTLS bool
	seat        *seat     // the connection's place in the pools
	start       time.Time // accepted
}

type connHandler func(ctx context.Context, c net.Conn, ci connInfo)

// serve runs the accept loop; busy is the line a client on a plaintext
// port hears when turned away for capacity.
func (s *Server) serve(ctx context.Context, ln net.Listener, proto string, implicitTLS bool, h connHandler, busy string) error {
	if !s.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	defer ln.Close()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	listener := "starttls"
	if implicitTLS {
		listener = "tls"
	}
	var backoff acceptBackoff
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() || ctx.Err() != nil {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("proxy: accept: %w", err)
			}
			// Out of descriptors (EMFILE, ENFILE), buffers (ENOBUFS) or a
			// connection reset before accept: none of it is the listener's
			// end. Wait and try again, as net/http does; the kernel keeps
			// new connections in the backlog meanwhile.
			backoff.wait(s.log, proto, listener, err)
			continue
		}
		backoff.reset()
		if !s.trackConn(c, true) {
			c.Close()
			continue
		}
		go s.handleConn(ctx, c, proto, listener, implicitTLS, h, busy)
	}
}

// handleConn admits c to the pools and runs h, or refuses c cheaply.
func (s *Server) handleConn(ctx context.Context, c net.Conn, proto, listener string, implicitTLS bool, h connHandler, busy string) {
	start := time.Now()
	defer s.trackConn(c, false)
	defer c.Close()
	// RemoteAddr may read a PROXY header: do it here, not in the accept loop.
	id := newConnID()
	log := s.log.With("conn", id, "proto", proto, "listener", listener, "remote", c.RemoteAddr().String())
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in connection handler", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	st, evicted, reason := s.pools.admit(c)
	if evicted != nil {
		evicted.Close()
		s.refused(proto, listener, refusedEvicted, evicted.RemoteAddr())
	}
	if st == nil {
		s.refused(proto, listener, reason, c.RemoteAddr())
		s.rejectBusy(c, busy, implicitTLS)
		return
	}
	defer st.release()
	s.obs.ConnOpened(proto, listener)
	defer s.obs.ConnClosed(proto, listener)
	h(ctx, c, connInfo{id: id, log: log, implicitTLS: implicitTLS, seat: st, start: start})
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing {
			return false
		}
		s.lns[ln] = struct{}{}
	} else {
		delete(s.lns, ln)
	}
	return true
}

func (s *Server) trackConn(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing {
			return false
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
	} else {
		delete(s.conns, c)
		s.wg.Done()
	}
	return true
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// shutdownGrace is how long sessions get, once the drain time is up, to say
// goodbye (IMAP BYE) before their connections are closed.
const shutdownGrace = 2 * time.Second

// Shutdown stops accepting and ends connections gracefully: pre-auth IMAP
// conversations get "* BYE" at once; relayed IMAP sessions and SMTP
// transactions may go on until ctx is done (the drain time), then IMAP
// sessions get "* BYE" and whatever is left is closed. It returns ctx.Err()
// if connections were still open when ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.shutdown)
	}
	for ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.startShutdown()

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.expireDrain()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	return ctx.Err()
}

// Close closes all listeners and connections at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}

// Conns is the number of client connections being served: accepted and
// not yet closed, on every listener.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Pools reports how many connections hold a seat in the pre-login pool and
// in the logged-in pool (see pools.go).
func (s *Server) Pools() (prelogin, loggedIn int) { return s.pools.counts() }

// OnShutdown calls f (once, in its own goroutine) when Shutdown begins; the
// returned stop cancels that. Fronts release there what they hold for the
// Server's lifetime (SMTP's go-smtp servers).
func (s *Server) OnShutdown(f func()) (stop func() bool) { return context.AfterFunc(s.shutdownCtx, f) }

// Limits are the server's limits, defaults applied.
func (s *Server) Limits() Limits { return s.limits }

// Logger is Options.Logger (slog.Default() if it was nil), for what a front
// logs outside a connection.
func (s *Server) Logger() *slog.Logger { return s.log }

// Observer is Options.Observer (NopObserver if it was nil), for what a
// front observes outside the login sequence and Relay (SMTP's messages).
func (s *Server) Observer() Observer { return s.obs }

// MasterAuth is the backend login as the master user (Options.Master) on
// behalf of user: every token login, and fronts' probes (check-config's --login-as).
func (s *Server) MasterAuth(user string) BackendAuth {
	return BackendAuth{AuthzID: user, AuthcID: s.opts.Master.User, Password: s.opts.Master.Password}
}

func newConnID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
