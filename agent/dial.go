package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

const (
	// quicFallbackAfter is how long auto waits for QUIC before trying TCP.
	quicFallbackAfter = 3 * time.Second
	// quicDialTimeout bounds one QUIC attempt, so that a relay that comes back
	// is found by the next attempt rather than a long-retransmitting one.
	quicDialTimeout = 5 * time.Second
)

func parseFingerprint(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "sha256:")
	b, err := hex.DecodeString(h)
	if !ok || err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("%q must be \"sha256:\" and 64 hex digits (printed by `burrow relay fingerprint`)", s)
	}
	return b, nil
}

// tlsConfig verifies the relay by pin, CA file or system roots; never not at all.
func (c *Config) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(c.Relay)
	tc := &tls.Config{
		ServerName: host,
		NextProtos: []string{protocol.ALPN},
		MinVersion: tls.VersionTLS13,
	}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.RelayFingerprint != "" {
		pin, err := parseFingerprint(c.RelayFingerprint)
		if err != nil {
			return nil, fmt.Errorf("relay_fingerprint: %w", err)
		}
		// The pin replaces chain verification: the certificate must be exactly the pinned one.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("relay sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			sum := sha256.Sum256(leaf.Raw)
			if !bytes.Equal(sum[:], pin) {
				return pinMismatch(leaf, c.RelayFingerprint, c.Relay)
			}
			return nil
		}
		return tc, nil
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}
