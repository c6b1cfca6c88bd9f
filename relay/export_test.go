package relay

import "time"

// ACMETestOptions are knobs for tests against a local ACME CA.
type ACMETestOptions struct {
	// DisableHTTP01 and DisableTLSALPN01 force the other challenge.
	DisableHTTP01, DisableTLSALPN01 bool
	// RenewCheckInterval is how often certmagic looks for certificates to renew.
	RenewCheckInterval time.Duration
}

// SetACMETestOptions applies o; call it between New and Listen.
func (s *Server) SetACMETestOptions(o ACMETestOptions) {
	s.acmeTest = acmeTest{disableHTTP01: o.DisableHTTP01, disableTLSALPN01: o.DisableTLSALPN01, renewCheckInterval: o.RenewCheckInterval}
}
