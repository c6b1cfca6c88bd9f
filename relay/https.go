package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// hstsValue is the Strict-Transport-Security of HTTPS responses when public.hsts is on.
const hstsValue = "max-age=31536000"

// acmeChallengePrefix is the HTTP-01 challenge path; plain HTTP never redirects it.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// HTTPSAddr is the bound public HTTPS address (TCP; HTTP/3 has the same UDP port), or nil.
func (s *Server) HTTPSAddr() net.Addr {
	if s.httpsLn == nil {
		return nil
	}
	return s.httpsLn.Addr()
}

// publicTLSConfig is the HTTPS listener's TLS config for TCP.
func (s *Server) publicTLSConfig() *tls.Config {
	protos := []string{"h2", "http/1.1"}
	if s.public.issuer != nil {
		protos = append(protos, alpnACME)
	}
	return &tls.Config{
		GetCertificate: s.public.GetCertificate,
		NextProtos:     protos,
		MinVersion:     tls.VersionTLS12,
	}
}

// tunnelCertificate serves the public certificate to agents that ask for
// tunnel.hostname; any other name (or none, as when an agent dials an IP
// address) gets the self-signed identity that fingerprints pin. While the
// public certificate is not obtained yet, agents asking for tunnel.hostname
// get the identity too: one that pins it connects, and one that does not is
// told by its own verification that the relay is self-signed, rather than
// a bare TLS internal error.
func (s *Server) tunnelCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.cfg.Tunnel.Hostname == "" || s.public == nil ||
		strings.ToLower(strings.TrimSuffix(hello.ServerName, ".")) != s.cfg.Tunnel.Hostname {
		return nil, nil // tls falls back to Config.Certificates: the identity
	}
	cert, err := s.public.GetCertificate(hello)
	if err != nil {
		s.noTunnelCertificate(err)
		return nil, nil
	}
	return cert, nil
}

// noTunnelCertificate logs, once per cause, that an agent asked for
// tunnel.hostname before its certificate was obtained, and why it is missing.
func (s *Server) noTunnelCertificate(err error) {
	why := s.acmeFailure(s.cfg.Tunnel.Hostname)
	if why == "" {
		why = "it is still being obtained (" + err.Error() + ")"
	}
	s.tunnelCertMu.Lock()
	same := s.tunnelCertWhy == why
	s.tunnelCertWhy = why
	s.tunnelCertMu.Unlock()
	if same {
		return
	}
	s.log.Warn("an agent asked for tunnel.hostname "+s.cfg.Tunnel.Hostname+", which has no certificate yet: "+
		"serving the self-signed tunnel identity meanwhile (agents that pin relay_fingerprint "+s.TunnelFingerprint()+" connect; the others wait for the certificate)",
		"why", why)
}

// newHTTPSServers prepares the HTTPS servers on the bound sockets.
func (s *Server) newHTTPSServers() error {
	h := s.httpsHandler()
	tlsConf := s.publicTLSConfig()
	s.httpsSrv = s.newHTTPServer(h)
	s.httpsSrv.TLSConfig = tlsConf

	h3conf := tlsConf.Clone()
	h3conf.NextProtos = nil // http3 sets h3
	h3conf.MinVersion = tls.VersionTLS13
	s.h3Tr = &quic.Transport{Conn: s.httpsUDP}
	ln, err := s.h3Tr.ListenEarly(http3.ConfigureTLSConfig(h3conf), &quic.Config{
		// No 0-RTT: a replayed early request would reach the service twice.
		Allow0RTT: false,
		// Pings keep a quiet connection (an idle websocket) from timing out at the client.
		KeepAlivePeriod: 20 * time.Second,
		MaxIdleTimeout:  time.Minute,
	})
	if err != nil {
		return fmt.Errorf("public.https (HTTP/3): %w", err)
	}
	s.h3Ln = ln
	s.h3Srv = &http3.Server{
		Handler:        h,
		MaxHeaderBytes: 64 << 10,
		IdleTimeout:    2 * time.Minute,
		Logger:         s.log.With("component", "http3"),
	}
	if strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		s.log.Warn("GODEBUG=http2xconnect=1 makes browsers send websockets over HTTP/2 extended CONNECT; the relay bridges them, but it is not needed")
	}
	return nil
}

// serveHTTPS runs the HTTPS servers until they are shut down.
func (s *Server) serveHTTPS(goFn func(func() error)) {
	goFn(func() error {
		if err := s.httpsSrv.ServeTLS(s.httpsLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("public.https: %w", err)
		}
		return nil
	})
	goFn(func() error {
		if err := s.h3Srv.ServeListener(s.h3Ln); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
			return fmt.Errorf("public.https (HTTP/3): %w", err)
		}
		return nil
	})
}

// shutdownHTTPS stops the HTTPS servers. Like the HTTP server's Shutdown, it
// does not wait for websockets: closing the tunnel sessions ends them.
func (s *Server) shutdownHTTPS(ctx context.Context) error {
	var errs []error
	var wg sync.WaitGroup
	var tlsErr error
	if s.httpsSrv != nil {
		wg.Go(func() {
			if err := s.httpsSrv.Shutdown(ctx); err != nil {
				tlsErr = s.httpsSrv.Close()
			}
		})
	}
	if s.h3Srv != nil {
		// Shutdown sends GOAWAY and waits for requests in flight, up to ctx.
		wg.Go(func() { _ = s.h3Srv.Shutdown(ctx) })
	}
	wg.Wait()
	errs = append(errs, tlsErr)
	if s.h3Srv != nil {
		errs = append(errs, s.h3Ln.Close(), s.h3Tr.Close())
	}
	if s.httpsUDP != nil {
		errs = append(errs, ignoreClosed(s.httpsUDP.Close()))
	}
	return errors.Join(errs...)
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// httpsHandler adds the HTTPS-only response headers, then serves as ServeHTTP.
func (s *Server) httpsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if s.cfg.Public.HSTS {
			h.Set("Strict-Transport-Security", hstsValue)
		}
		if r.ProtoMajor < 3 {
			// Alt-Svc tells browsers that HTTP/3 is on the same port.
			_ = s.h3Srv.SetQUICHeaders(h)
		}
		s.ServeHTTP(w, r)
	})
}

// httpHandler is the plain-HTTP server's handler: ACME HTTP-01 answers, then
// the redirect to HTTPS when public.redirect_http is on, then ServeHTTP.
func (s *Server) httpHandler() http.Handler {
	var h http.Handler = s
	if s.cfg.Public.RedirectHTTP && s.httpsLn != nil {
		h = http.HandlerFunc(s.redirectHTTPS)
	}
	return s.public.httpChallenge(h)
}

// redirectHTTPS answers 308 with the https URL of the request, for granted
// hosts; ACME challenge paths and unknown hosts are served as usual.
func (s *Server) redirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host := canonicalHost(r.Host)
	if strings.HasPrefix(r.URL.Path, acmeChallengePrefix) || !s.granted(host) ||
		(s.trusted(r.RemoteAddr) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")) {
		s.ServeHTTP(w, r)
		return
	}
	target := baseURL("https", host, portOf(s.httpsLn.Addr()), 443) + r.URL.RequestURI()
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusPermanentRedirect)
}
