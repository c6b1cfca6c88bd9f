package relay

import "time"

// ACMETestOptions are knobs for tests against a local ACME CA.
type ACMETestOptions struct {
	// DisableHTTP01 and DisableTLSALPN01 force the other challenge.
	DisableHTTP01, DisableTLSALPN01 bool
	// RenewCheckInterval is how often certmagic looks for certificates to renew.
	RenewCheckInterval time.Duration
	// DisableARI makes renewals follow the certificate's lifetime alone:
	// pebble's renewal window for a certificate that lives seconds spans
	// all of its life.
	DisableARI bool
	// LockTTL is the lifetime of the Redis store's locks without a refresh.
	LockTTL time.Duration
	// RedisWatch is the interval between pings of the Redis store.
	RedisWatch time.Duration
}

// SetACMETestOptions applies o; call it between New and Listen.
func (s *Server) SetACMETestOptions(o ACMETestOptions) {
	s.acmeTest = acmeTest{disableHTTP01: o.DisableHTTP01, disableTLSALPN01: o.DisableTLSALPN01, disableARI: o.DisableARI,
		renewCheckInterval: o.RenewCheckInterval, lockTTL: o.LockTTL, redisWatch: o.RedisWatch}
}

// Timeouts are the limits the relay puts on proxied requests.
type Timeouts struct {
	ResponseHeader, Read, Write, ReadHeader time.Duration
}

// ProxyTimeouts reports the relay's timeouts on the proxy and public HTTP side.
func (s *Server) ProxyTimeouts() Timeouts {
	h := s.newHTTPServer(nil)
	return Timeouts{ResponseHeader: s.transport.responseHeader, Read: h.ReadTimeout, Write: h.WriteTimeout, ReadHeader: h.ReadHeaderTimeout}
}
