package relay

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CertStatus is one certificate the relay serves, for the status page.
type CertStatus struct {
	Name string `json:"name"`
	// Use is "public" (HTTPS, and the tunnel with tunnel.hostname) or
	// "tunnel" (the self-signed certificate agents pin).
	Use    string `json:"use"`
	Source string `json:"source"` // "acme", "file" or "self-signed"
	Issuer string `json:"issuer,omitempty"`
	// NotAfter is zero while an ACME certificate is not obtained yet.
	NotAfter time.Time `json:"not_after"`
}

// certificates lists the relay's certificates, soonest to expire first,
// the ones not obtained yet on top.
func (s *Server) certificates() []CertStatus {
	var out []CertStatus
	if leaf := leafOf(s.cert); leaf != nil {
		out = append(out, CertStatus{Name: leafName(leaf), Use: "tunnel", Source: "self-signed", NotAfter: leaf.NotAfter})
	}
	if p := s.public; p != nil {
		if p.static != nil {
			if leaf := leafOf(*p.static); leaf != nil {
				out = append(out, CertStatus{Name: leafName(leaf), Use: "public", Source: "file", Issuer: leaf.Issuer.CommonName, NotAfter: leaf.NotAfter})
			}
		}
		if p.cache != nil {
			var names []string
			if s.cfg.Public.HTTPS != "" {
				names = s.reg.hosts() // certificates on demand for published hosts
			}
			for n := range p.names {
				names = append(names, n)
			}
			slices.Sort(names)
			for _, n := range slices.Compact(names) {
				c := CertStatus{Name: n, Use: "public", Source: "acme"}
				for _, cert := range p.cache.AllMatchingCertificates(n) {
					if leaf := cert.Leaf; leaf != nil && leaf.NotAfter.After(c.NotAfter) {
						c.NotAfter, c.Issuer = leaf.NotAfter, leaf.Issuer.CommonName
					}
				}
				out = append(out, c)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b CertStatus) int { return a.NotAfter.Compare(b.NotAfter) })
	return out
}

// leafOf parses a certificate's leaf, or returns nil.
func leafOf(c tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

func leafName(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, " ")
	}
	return c.Subject.CommonName
}

// certCollector reports each certificate's expiry at scrape time.
type certCollector struct{ s *Server }

var certExpiryDesc = prometheus.NewDesc("burrow_relay_certificate_expiry_timestamp_seconds",
	"When each certificate the relay serves expires (Unix time), by name and use (public or tunnel).", []string{"name", "use"}, nil)

func (certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (c certCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cert := range c.s.certificates() {
		if !cert.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cert.Name, cert.Use)
		}
	}
}
