// Package relay is Burrow's public side: it accepts agent sessions, keeps the
// route table, and proxies public HTTP requests through tunnel streams.
package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Server is a relay.
type Server struct {
	cfg       Config
	log       *slog.Logger
	reg       *registry
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	cert      tls.Certificate

	tunnel   *protocol.Listener
	httpLn   net.Listener
	httpSrv  *http.Server
	listened bool
}

// New validates cfg and prepares a relay; Listen binds its sockets.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, reg: newRegistry()}
	s.proxy = s.newProxy()
	cert, err := LoadTunnelCertificate(cfg.Tunnel, cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s.cert = cert
	return s, nil
}

// TunnelFingerprint is the pin of the tunnel certificate.
func (s *Server) TunnelFingerprint() string { return Fingerprint(s.cert.Certificate[0]) }

// Listen binds the tunnel and public listeners.
func (s *Server) Listen() error {
	seed, err := x509.MarshalPKCS8PrivateKey(s.cert.PrivateKey)
	if err != nil {
		return fmt.Errorf("tunnel key: %w", err)
	}
	tl, err := protocol.ListenConfig{
		TLS:       &tls.Config{Certificates: []tls.Certificate{s.cert}},
		Log:       s.log,
		ResetSeed: seed,
	}.Listen(s.cfg.Tunnel.Listen)
	if err != nil {
		return fmt.Errorf("tunnel.listen: %w", err)
	}
	s.tunnel = tl
	if s.cfg.Public.HTTP != "" {
		ln, err := net.Listen("tcp", s.cfg.Public.HTTP)
		if err != nil {
			tl.Close()
			return fmt.Errorf("public.http: %w", err)
		}
		s.httpLn = ln
	}
	s.listened = true
	return nil
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
				s.serveSession(ctx, sess)
			}()
		}
	})
	if s.httpLn != nil {
		s.httpSrv = s.newHTTPServer(s)
		g.Go(func() error {
			if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("public.http: %w", err)
			}
			return nil
		})
	}
	s.log.Info("relay listening", "tunnel", s.tunnel.Addr().String(), "http", addrString(s.HTTPAddr()), "fingerprint", s.TunnelFingerprint())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	if s.httpSrv != nil {
		// Shutdown does not wait for hijacked (websocket) connections; closing the
		// sessions below ends them.
		if err := s.httpSrv.Shutdown(sctx); err != nil {
			errs = append(errs, s.httpSrv.Close())
		}
	}
	errs = append(errs, s.tunnel.Close())
	sessions.Wait()
	s.transport.CloseIdleConnections()
	errs = append(errs, g.Wait())
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
	}
}

func (s *Server) errorLog() *log.Logger {
	return slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
}

// publicURLs are a route's public base URLs, most preferred first.
func (s *Server) publicURLs(host, prefix string) []string {
	var urls []string
	if a := s.HTTPAddr(); a != nil {
		urls = append(urls, baseURL("http", host, portOf(a), 80)+prefix)
	}
	return urls
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
