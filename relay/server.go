// Package relay is Burrow's public side: it accepts agent sessions, keeps the
// route table, and proxies public HTTP requests through tunnel streams.
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/internal/liveset"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// Server is a relay.
type Server struct {
	// cfg is the config the relay started with; conf is the one in force,
	// which a reload may change (see Reload for what it may change).
	cfg       Config
	conf      atomic.Pointer[Config]
	reloadMu  sync.Mutex    // one reload at a time, and no route change beside it
	gen       atomic.Uint64 // counts reloads
	log       *slog.Logger
	reg       *registry
	proxy     *httputil.ReverseProxy
	transport *streamTransport
	clients   *clientLimit // requests in flight per client address
	metrics   *metrics
	started   time.Time

	admin  *admin.Server // nil when admin.listen is off
	recent admin.Recent  // the last warnings and errors, for the status page
	budget *memoryBudget // limits.memory_mib

	guards guards // routes' access policies

	// draining ends when the relay starts to shut down (drainStart).
	draining   context.Context
	drainStart context.CancelFunc

	live liveset.Set[*tunnelSession] // welcomed sessions
	cert tls.Certificate

	tunnel   *transport.Listener
	httpLn   net.Listener
	httpSrv  *http.Server
	listened bool

	// The public certificate (static or ACME); nil without HTTPS and tunnel.hostname.
	public   *publicCerts
	acmeTest acmeTest

	acmeMu        sync.Mutex
	acmeFailures  map[string]string // guarded by acmeMu: host → the last failure's likely cause
	tunnelCertMu  sync.Mutex
	tunnelCertWhy string // guarded by tunnelCertMu: why tunnel.hostname had no certificate, last logged

	// HTTPS: TLS on TCP, HTTP/3 on the same UDP port.
	httpsLn  net.Listener
	httpsUDP net.PacketConn
	httpsSrv *http.Server
	h3Tr     *quic.Transport
	h3Ln     *quic.EarlyListener
	h3Srv    *http3.Server

	// upgrades counts the goroutines joining upgraded (WebSocket) connections to streams.
	upgrades  sync.WaitGroup
	upMu      sync.Mutex
	upClosing bool // guarded by upMu; no upgrade is tracked once set
}

// New validates cfg and prepares a relay; Listen binds its sockets.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, reg: newRegistry(), metrics: newMetrics(), started: time.Now(), clients: newClientLimit(cfg.Limits.StreamsPerClient)}
	s.conf.Store(&cfg)
	s.log = slog.New(s.recent.Handler(log.Handler()))
	s.budget = newMemoryBudget(cfg.Limits.MemoryMiB, s.log)
	for _, w := range cfg.Warnings() {
		s.log.Warn(w)
	}
	s.draining, s.drainStart = context.WithCancel(context.Background())
	s.proxy = s.newProxy()
	cert, err := LoadTunnelCertificate(cfg.Tunnel, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.cert = cert
	s.metrics.reg.MustRegister(certCollector{s})
	if cfg.TLS.CertFile != "" {
		static, err := loadStaticCert(cfg.TLS)
		if err != nil {
			return nil, err
		}
		s.public = &publicCerts{static: static}
	}
	return s, nil
}

// TunnelFingerprint is the pin of the tunnel certificate.
func (s *Server) TunnelFingerprint() string { return Fingerprint(s.cert.Certificate[0]) }

// Listen binds the tunnel and public listeners.
func (s *Server) Listen() (err error) {
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	if s.cfg.Public.HTTP != "" {
		if s.httpLn, err = net.Listen("tcp", s.cfg.Public.HTTP); err != nil {
			return fmt.Errorf("public.http: %w%s", err, bindHint(s.cfg.Public.HTTP, err))
		}
		s.httpLn = unsentCapped{s.httpLn}
	}
	if s.cfg.Public.HTTPS != "" {
		if s.httpsLn, s.httpsUDP, err = transport.ListenSamePort(s.cfg.Public.HTTPS); err != nil {
			return fmt.Errorf("public.https: %w%s", err, bindHint(s.cfg.Public.HTTPS, err))
		}
		s.httpsLn = unsentCapped{s.httpsLn}
	}
	if s.acmeEnabled() {
		// After the public listeners: certmagic needs their ports.
		if s.public, err = s.newACME(); err != nil {
			return err
		}
	}
	seed, err := x509.MarshalPKCS8PrivateKey(s.cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	tl, err := transport.ListenConfig{
		TLS:       &tls.Config{Certificates: []tls.Certificate{s.cert}, GetCertificate: s.tunnelCertificate},
		Log:       s.log,
		ResetSeed: seed,

		HandshakesPerMinute: s.cfg.Limits.HandshakesPerMinute,
		SessionMemory:       int64(s.cfg.Limits.SessionMemoryMiB) << 20,
	}.Listen(s.cfg.Tunnel.Listen)
	if err != nil {
		return fmt.Errorf("tunnel.listen: %w%s", err, bindHint(s.cfg.Tunnel.Listen, err))
	}
	s.tunnel = tl
	if s.cfg.Admin.Listen != "" {
		if s.admin, err = admin.Listen(admin.Options{Listen: s.cfg.Admin.Listen, Pprof: s.cfg.Admin.Pprof,
			Gatherer: s.metrics.reg, Status: s.Status, Page: StatusPage, Log: s.log}); err != nil {
			return err
		}
	}
	if s.httpsLn != nil {
		if err := s.newHTTPSServers(); err != nil {
			return err
		}
	}
	s.listened = true
	return nil
}

// closeListeners undoes a failed Listen.
func (s *Server) closeListeners() {
	closeIfSet(s.tunnel)
	if s.admin != nil {
		s.admin.Close()
	}
	closeIfSet(s.h3Ln)
	closeIfSet(s.h3Tr)
	closeIfSet(s.httpLn)
	closeIfSet(s.httpsLn)
	closeIfSet(s.httpsUDP)
	s.public.stop()
}

// drain stops taking new tunnel sessions and public connections, tells the
// agents the relay is going away (an agent with another relay, or waiting
// for this one's restart, connects anew without a gap), closes WebSockets,
// and lets the requests in flight finish for up to shutdown_grace.
func (s *Server) drain(sessions *sync.WaitGroup) []error {
	s.drainStart()
	grace := s.current().ShutdownGrace
	s.log.Info("relay stopping: finishing the requests in flight", "grace", grace)
	errs := []error{s.tunnel.Close()}
	for _, ts := range s.live.Items() {
		ts.goingAway("relay shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// All at once: each Shutdown stops its listener first, then waits.
	var wg sync.WaitGroup
	var httpErr, httpsErr error
	if s.httpSrv != nil {
		wg.Go(func() {
			if err := s.httpSrv.Shutdown(sctx); err != nil {
				httpErr = s.httpSrv.Close()
			}
		})
	}
	wg.Go(func() { httpsErr = s.shutdownHTTPS(sctx) })
	wg.Wait()
	errs = append(errs, httpErr, httpsErr)
	if sctx.Err() != nil && grace > 0 {
		s.log.Warn("relay stopping: shutdown_grace is over, cutting the requests still running", "grace", grace)
	}
	return errs
}

// AdminAddr is the admin listener's address, or "" when it is off.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Addr().String()
}

// closeIfSet closes c unless it is nil.
func closeIfSet[T interface {
	comparable
	io.Closer
}](c T) {
	var unset T
	if c != unset {
		c.Close()
	}
}

// TunnelAddr is the bound tunnel address (TCP; UDP has the same port).
func (s *Server) TunnelAddr() net.Addr { return s.tunnel.Addr() }

// HTTPAddr is the bound public HTTP address, or nil.
func (s *Server) HTTPAddr() net.Addr {
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Run serves until ctx ends, then closes every listener and session and waits for them.
func (s *Server) Run(ctx context.Context) error {
	if !s.listened {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	// Sessions outlive ctx by the drain: they carry the answers in flight.
	sessCtx, endSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer endSessions()
	var sessions sync.WaitGroup
	g.Go(func() error {
		for {
			sess, err := s.tunnel.Accept(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("tunnel: %w", err)
			}
			sessions.Add(1)
			go func() {
				defer sessions.Done()
				s.serveSession(sessCtx, sess)
			}()
		}
	})
	if s.httpLn != nil {
		s.httpSrv = s.newHTTPServer(s.httpHandler())
		g.Go(func() error {
			if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("public.http: %w", err)
			}
			return nil
		})
	}
	if s.httpsSrv != nil {
		s.serveHTTPS(g.Go)
	}
	if s.admin != nil {
		g.Go(func() error { return s.admin.Run(sessCtx) }) // through the drain: /readyz says so
	}
	g.Go(func() error { return s.budget.run(ctx) })
	// Certificates are obtained in the background; ctx ends their retries.
	if err := s.public.start(ctx); err != nil {
		s.log.Error("certificate management did not start", "err", err)
	}
	if advice := transport.UDPBufferAdvice(); advice != "" {
		s.log.Warn("QUIC tunnel and HTTP/3 may be slow: " + advice)
	}
	s.log.Info("relay listening", "tunnel", s.tunnel.Addr().String(), "http", addrString(s.HTTPAddr()),
		"https", addrString(s.HTTPSAddr()), "admin", s.AdminAddr(), "fingerprint", s.TunnelFingerprint())
	if len(s.cfg.Agents) == 0 {
		s.log.Warn("no agents configured: nothing can be published until relay.yaml grants one (agents[]; `burrow token new` makes a token)")
	}
	<-ctx.Done()
	errs := s.drain(&sessions)
	endSessions()
	sessions.Wait()
	// Closing the sessions ended every upgraded connection's stream.
	s.upMu.Lock()
	s.upClosing = true
	s.upMu.Unlock()
	s.upgrades.Wait()
	s.transport.CloseIdleConnections()
	errs = append(errs, g.Wait())
	s.public.stop()
	return errors.Join(errs...)
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler: h,
		// Slow-header attacks are cut; a stream in progress has no deadline.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.errorLog(),
		// The stall guard closes an HTTP/2 connection that a cut cannot reach.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey, c)
		},
	}
}

func (s *Server) errorLog() *log.Logger {
	return slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}

// publicURLs are a route's public base URLs, most preferred first.
func (s *Server) publicURLs(host, prefix string) []string {
	var urls []string
	if a := s.HTTPSAddr(); a != nil {
		urls = append(urls, baseURL("https", host, portOf(a), 443)+prefix)
	}
	if a := s.HTTPAddr(); a != nil {
		urls = append(urls, baseURL("http", host, portOf(a), 80)+prefix)
	}
	return urls
}

// bindHint is what to do when binding addr was refused for want of the
// right to a port below 1024, or "".
func bindHint(addr string, err error) string {
	_, port, _ := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if !errors.Is(err, os.ErrPermission) || perr != nil || n == 0 || n >= 1024 {
		return ""
	}
	return fmt.Sprintf(" (ports below 1024 need root or the CAP_NET_BIND_SERVICE capability: in a systemd unit, "+
		"AmbientCapabilities=CAP_NET_BIND_SERVICE; by hand, sudo setcap cap_net_bind_service=+ep $(command -v burrow); "+
		"or use a port above 1023 for %s)", addr)
}

func portOf(a net.Addr) int {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.Port
	}
	return 0
}

func baseURL(scheme, host string, port, defaultPort int) string {
	if port == 0 || port == defaultPort {
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
