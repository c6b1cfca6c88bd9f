package relay

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/burrow-tunnel/burrow/internal/redisstore"
)

// alpnACME is the TLS-ALPN-01 challenge protocol (RFC 8737).
const alpnACME = "acme-tls/1"

// publicCerts serves the relay's public certificate: a static pair from
// tls.cert_file, or certificates from an ACME CA through certmagic.
//
// With ACME, the hosts granted exactly (and tunnel.hostname) are managed from
// the start and renewed in the background. A name under a wildcard grant gets
// an on-demand certificate at its first handshake, and only while a connected
// agent serves it: an arbitrary SNI never makes the relay ask the CA.
type publicCerts struct {
	static *tls.Certificate

	cache    *certmagic.Cache
	managed  *certmagic.Config // exact hosts, obtained at start
	onDemand *certmagic.Config // names under wildcard grants, obtained at first handshake
	issuer   *certmagic.ACMEIssuer
	names    map[string]bool // the managed names
	// redis is the shared store, nil with the file store; start watches it
	// (a goroutine that stop ends) so that an outage is logged when it begins.
	redis      *redisstore.Store
	redisWatch time.Duration
	log        *slog.Logger
	stopWatch  context.CancelFunc
	watchDone  chan struct{}
	stopOnce   sync.Once
}

// redisWatchInterval is how often a relay pings a shared Redis.
const redisWatchInterval = 15 * time.Second

// acmeTest holds knobs that only tests turn (see export_test.go).
type acmeTest struct {
	disableHTTP01, disableTLSALPN01 bool
	disableARI                      bool
	renewCheckInterval              time.Duration
	lockTTL                         time.Duration // of the Redis store's locks
	redisWatch                      time.Duration // between pings of the Redis store
}

func loadStaticCert(c TLSConfig) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file/tls.key_file: %w", err)
	}
	return &cert, nil
}

// acmeEnabled reports whether the relay gets its certificates from an ACME CA.
func (s *Server) acmeEnabled() bool {
	return s.cfg.TLS.CertFile == "" && s.cfg.TLS.ACME.CA != "" &&
		(s.cfg.Public.HTTPS != "" || s.cfg.Tunnel.Hostname != "")
}

// managedNames are the names whose certificates are obtained at start.
func (s *Server) managedNames() []string {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if s.cfg.Public.HTTPS != "" {
		for _, a := range s.cfg.Agents {
			for _, h := range a.Hosts {
				if !strings.HasPrefix(h, "*.") {
					add(h)
				}
			}
		}
	}
	if s.cfg.Tunnel.Hostname != "" {
		add(s.cfg.Tunnel.Hostname)
	}
	return names
}

// newACME prepares certmagic once the public listeners are bound (their ports
// tell certmagic where the challenges are answered). It starts the cache's
// maintenance goroutine; stop stops it.
func (s *Server) newACME() (*publicCerts, error) {
	a := s.cfg.TLS.ACME
	var roots *x509.CertPool
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.acme.ca_root: %s holds no PEM certificate", a.CARoot)
		}
	}
	logger := zap.New(&slogCore{log: s.log.With("component", "acme")})
	p := &publicCerts{names: map[string]bool{}}
	for _, n := range s.managedNames() {
		p.names[n] = true
	}
	p.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) {
			if len(c.Names) > 0 && !p.names[c.Names[0]] {
				return p.onDemand, nil
			}
			return p.managed, nil
		},
		RenewCheckInterval: s.acmeTest.renewCheckInterval,
		Logger:             logger,
	})
	storage, err := s.certStorage()
	if err != nil {
		p.stop()
		return nil, err
	}
	if r, ok := storage.(*redisstore.Store); ok {
		p.redis, p.redisWatch, p.log = r, cmp.Or(s.acmeTest.redisWatch, redisWatchInterval), s.log
	}
	base := certmagic.Config{
		Storage:    storage,
		Logger:     logger,
		DisableARI: s.acmeTest.disableARI,
		OnEvent:    s.acmeEvent,
		ShouldEmitFunc: func(event string) bool {
			return event == "cert_obtained" || event == "cert_failed"
		},
	}
	p.managed = certmagic.New(p.cache, base)
	onDemand := base
	onDemand.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: s.allowOnDemand}
	p.onDemand = certmagic.New(p.cache, onDemand)

	tmpl := certmagic.ACMEIssuer{
		CA:           a.CA,
		Email:        a.Email,
		Agreed:       true,
		TrustedRoots: roots,
		Logger:       logger,
	}
	// The challenges are answered by the relay's own listeners: HTTP-01 by the
	// plain-HTTP server, TLS-ALPN-01 by the HTTPS one. Naming their addresses
	// makes certmagic find them busy and leave them to us.
	if s.httpLn != nil {
		tmpl.ListenHost, tmpl.AltHTTPPort = hostPort(s.httpLn.Addr())
	} else {
		tmpl.DisableHTTPChallenge = true
	}
	if s.httpsLn != nil {
		var host string
		host, tmpl.AltTLSALPNPort = hostPort(s.httpsLn.Addr())
		if tmpl.ListenHost == "" {
			tmpl.ListenHost = host
		}
	} else {
		tmpl.DisableTLSALPNChallenge = true
	}
	if s.acmeTest.disableHTTP01 {
		tmpl.DisableHTTPChallenge = true
	}
	if s.acmeTest.disableTLSALPN01 {
		tmpl.DisableTLSALPNChallenge = true
	}
	if tmpl.DisableHTTPChallenge && tmpl.DisableTLSALPNChallenge {
		p.stop()
		return nil, errors.New("tls.acme: no challenge can be answered: set public.http (HTTP-01) or public.https (TLS-ALPN-01)")
	}
	// Both configs share one issuer, so one ACME account and one challenge memory.
	p.issuer = certmagic.NewACMEIssuer(p.managed, tmpl)
	p.managed.Issuers = []certmagic.Issuer{p.issuer}
	p.onDemand.Issuers = []certmagic.Issuer{p.issuer}
	return p, nil
}

// certStorage is where certmagic keeps certificates, keys, the ACME account,
// challenge tokens and locks: state_dir/certmagic, or a Redis that several
// relays share. With Redis, the challenge tokens in it let any relay answer
// a challenge that another relay started (certmagic's distributed solving,
// on by default), and its locks make one relay, not each, order a name.
func (s *Server) certStorage() (certmagic.Storage, error) {
	r := s.cfg.TLS.Storage.Redis
	if !r.Enabled() {
		return &certmagic.FileStorage{Path: filepath.Join(s.cfg.StateDir, "certmagic")}, nil
	}
	var password string
	if r.PasswordFile != "" {
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("tls.storage.redis.password_file: %w", err)
		}
		if password = strings.TrimSpace(string(b)); password == "" {
			return nil, fmt.Errorf("tls.storage.redis.password_file: %s is empty; put Redis's requirepass in it, or remove the key", r.PasswordFile)
		}
	}
	store, err := redisstore.New(redisstore.Options{
		Address:   r.Address,
		Password:  password,
		KeyPrefix: r.KeyPrefix,
		LockTTL:   s.acmeTest.lockTTL,
		Log:       s.log.With("component", "certstore"),
	})
	if err != nil {
		return nil, fmt.Errorf("tls.storage.redis: %w", err)
	}
	s.log.Info("certificates shared through Redis", "redis", r.Address, "key_prefix", r.KeyPrefix)
	return store, nil
}

func hostPort(a net.Addr) (string, int) {
	host, port, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(port)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	return host, n
}

// allowOnDemand lets certmagic ask the CA for a name only while a connected
// agent serves it. The exact grants of the config the relay started with are
// managed and never come here; this covers the names under wildcard grants
// and exact grants a reload added.
func (s *Server) allowOnDemand(_ context.Context, name string) error {
	if !s.granted(name) || !s.reg.hasHost(name) {
		s.log.Debug("no certificate for unserved name", "server_name", name)
		return fmt.Errorf("no connected agent serves %q", name)
	}
	return nil
}

func (s *Server) acmeEvent(_ context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	switch event {
	case "cert_obtained":
		s.setACMEFailure(host, "")
		s.log.Info("certificate obtained", "host", host, "renewal", data["renewal"], "issuer", data["issuer"])
	case "cert_failed":
		err, _ := data["error"].(error)
		cause := acmeCause(err, host, s.cfg.TLS.ACME.CA)
		s.setACMEFailure(host, cause)
		// One line with the likely cause; certmagic's own lines about the
		// attempt, with the CA's full answer, are at debug level.
		s.log.Warn("no certificate for "+host+" yet: "+cause+"; the relay tries again by itself (the CA's full answer is logged at log.level: debug)",
			"host", host, "renewal", data["renewal"])
	}
	return nil
}

// setACMEFailure records why host has no certificate; "" clears it.
func (s *Server) setACMEFailure(host, cause string) {
	s.acmeMu.Lock()
	defer s.acmeMu.Unlock()
	if cause == "" {
		delete(s.acmeFailures, host)
		return
	}
	if s.acmeFailures == nil {
		s.acmeFailures = map[string]string{}
	}
	s.acmeFailures[host] = cause
}

// acmeFailure is the likely cause of host's last failed certificate request, or "".
func (s *Server) acmeFailure(host string) string {
	s.acmeMu.Lock()
	defer s.acmeMu.Unlock()
	return s.acmeFailures[host]
}

// acmeCause names the likely cause of a failed certificate request for
// host, and what to check, from the CA's problem document.
func acmeCause(err error, host, ca string) string {
	var p acme.Problem
	if errors.As(err, &p) {
		detail := strings.TrimSpace(p.Detail)
		if detail != "" {
			detail = " (the CA says: " + detail + ")"
		}
		typ := p.Type
		if typ == acme.ProblemTypeUnauthorized && couldNotConnect(p.Detail) {
			// Some CAs call a refused or timed-out TLS-ALPN-01 connection unauthorized.
			typ = acme.ProblemTypeConnection
		}
		switch typ {
		case acme.ProblemTypeRateLimited:
			return "the CA's rate limit" + detail + ": wait before trying again (Let's Encrypt: an hour after failed validations), " +
				"and try a new setup against a staging CA (tls.acme.ca) first"
		case acme.ProblemTypeDNS:
			return "DNS: the CA could not look up " + host + detail + ": give it an A and/or AAAA record pointing at this server"
		case acme.ProblemTypeConnection, acme.ProblemTypeTLS:
			return "the CA could not connect to this server for " + host + detail + ": check that " + host +
				"'s DNS points here and that ports 80/tcp (HTTP-01) and 443/tcp (TLS-ALPN-01) are open to the internet"
		case acme.ProblemTypeUnauthorized, acme.ProblemTypeIncorrectResponse:
			return "the CA reached a server that did not answer its challenge for " + host + detail + ": " + host +
				"'s DNS does not point here (or goes through a CDN proxy), or ports 80/443 reach another server"
		case acme.ProblemTypeCAA:
			return "a CAA record of " + host + " forbids this CA" + detail
		case acme.ProblemTypeRejectedIdentifier, acme.ProblemTypeUnsupportedIdentifier:
			return "the CA does not issue certificates for " + host + detail
		}
		return "the CA refused" + detail
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return "cannot reach the ACME CA at " + ca + ": check tls.acme.ca and this server's outgoing connections"
	}
	return "the request failed (see the debug log)"
}

// couldNotConnect reports whether a CA's problem detail says it could not connect.
func couldNotConnect(detail string) bool {
	d := strings.ToLower(detail)
	return strings.Contains(d, "connect") || strings.Contains(d, "timeout") || strings.Contains(d, "timed out")
}

// start begins managing the certificates; ctx ends the retries of obtains in flight.
func (p *publicCerts) start(ctx context.Context) error {
	if p == nil || p.cache == nil {
		return nil
	}
	names := make([]string, 0, len(p.names))
	for n := range p.names {
		names = append(names, n)
	}
	if p.redis == nil {
		if len(names) == 0 {
			return nil
		}
		return p.managed.ManageAsync(ctx, names)
	}
	// certmagic gives up on a name whose certificate it cannot load at start,
	// so with Redis the names are managed once Redis answers, and again each
	// time it is back after an outage (a no-op for the names already managed).
	wctx, cancel := context.WithCancel(ctx)
	p.stopWatch, p.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(p.watchDone)
		p.redis.Watch(wctx, p.redisWatch, func() {
			if len(names) == 0 {
				return
			}
			if err := p.managed.ManageAsync(wctx, names); err != nil {
				p.log.Error("certificate management did not start", "err", err)
			}
		})
	}()
	return nil
}

// stop ends certmagic's maintenance goroutine and releases the storage.
func (p *publicCerts) stop() {
	if p != nil && p.cache != nil {
		p.stopOnce.Do(func() {
			if p.stopWatch != nil {
				p.stopWatch()
				<-p.watchDone
			}
			p.cache.Stop()
			if p.redis != nil {
				_ = p.redis.Close() // closing connections: nothing left to do about an error
			}
		})
	}
}

// GetCertificate is the HTTPS listener's tls.Config.GetCertificate.
func (p *publicCerts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if p.static != nil {
		return p.static, nil
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil, errors.New("relay: the client sent no server name (SNI)")
	}
	if p.names[name] || (len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnACME) {
		return p.managed.GetCertificate(hello)
	}
	return p.onDemand.GetCertificate(hello)
}

// httpChallenge wraps the plain-HTTP handler so that it answers HTTP-01 challenges.
func (p *publicCerts) httpChallenge(next http.Handler) http.Handler {
	if p == nil || p.issuer == nil {
		return next
	}
	return p.issuer.HTTPChallengeHandler(next)
}

// slogCore hands certmagic's zap logs to the relay's slog logger. certmagic
// is chatty at Info, so its Info goes to Debug; warnings and errors stay.
type slogCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

var _ zapcore.Core = (*slogCore)(nil)

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.log.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{log: c.log, fields: append(c.fields[:len(c.fields):len(c.fields)], fields...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// attemptLines are certmagic's and acmez's lines about one failed attempt
// to obtain a certificate: the cert_failed event sums them up in one line
// (acmeEvent), so they go to debug.
var attemptLines = map[string]bool{
	"could not get certificate from issuer": true,
	"job failed":                            true,
	"will retry":                            true,
	"final attempt; giving up":              true,
	"challenge failed":                      true,
	"validating authorization":              true,
	"deactivating authorization":            true,
	"cleaning up solver":                    true,
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slogLevel(e.Level)
	if attemptLines[e.Message] {
		level = slog.LevelDebug
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields)+2)
	if e.LoggerName != "" {
		args = append(args, "logger", e.LoggerName)
	}
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	c.log.Log(context.Background(), level, e.Message, args...)
	return nil
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}
