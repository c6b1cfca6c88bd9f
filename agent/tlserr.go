package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// identityName is the one DNS name in a Burrow relay's self-signed tunnel
// identity (relay/identity.go).
const identityName = "burrow-relay"

// RelayCertError is a relay certificate the agent refused, with what to change.
type RelayCertError struct {
	// Fingerprint is the "sha256:…" of the certificate the relay presented.
	Fingerprint string
	// Advice is the whole actionable sentence.
	Advice string
	// Err is the verification error.
	Err error
}

func (e *RelayCertError) Error() string { return e.Advice }

func (e *RelayCertError) Unwrap() error { return e.Err }

// explainCertError turns a failed verification of the relay's certificate
// into what the owner should do; other errors are returned as they are.
// serverName is the name the agent verified the relay for.
func explainCertError(err error, serverName string) error {
	var already *RelayCertError
	if errors.As(err, &already) {
		return already
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) || len(cve.UnverifiedCertificates) == 0 {
		return err
	}
	leaf := cve.UnverifiedCertificates[0]
	fp := fingerprintOf(leaf.Raw)
	e := &RelayCertError{Fingerprint: fp, Err: cve.Err}
	var hostErr x509.HostnameError
	switch {
	case selfSigned(leaf):
		e.Advice = fmt.Sprintf("the relay presents a self-signed certificate; pin it with relay_fingerprint: %s "+
			"(run `burrow relay fingerprint` on the relay to check that it prints the same)", fp)
		if isIdentity(leaf) && net.ParseIP(serverName) == nil {
			e.Advice += fmt.Sprintf("; or, if the relay has tunnel.hostname: %s, it has no certificate for that name yet "+
				"and serves its own meanwhile: the relay's log says why", serverName)
		}
	case errors.As(cve.Err, &hostErr):
		e.Advice = fmt.Sprintf("the relay's certificate is for %s, not %s: set server_name: to one of its names, "+
			"or relay: to that name and the tunnel port", strings.Join(certNames(leaf), ", "), serverName)
	case isUnknownAuthority(cve.Err):
		e.Advice = fmt.Sprintf("the relay's certificate (for %s) is signed by %q, which this machine does not trust: "+
			"set ca_file: to that authority's PEM file, or pin the certificate with relay_fingerprint: %s",
			strings.Join(certNames(leaf), ", "), leaf.Issuer.CommonName, fp)
	default:
		e.Advice = fmt.Sprintf("the relay's certificate (%s) did not verify: %v", fp, cve.Err)
	}
	return e
}

func fingerprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// selfSigned reports whether c signed itself.
func selfSigned(c *x509.Certificate) bool {
	// CheckSignatureFrom would refuse a parent that is not a CA, as a
	// relay's identity is not.
	return string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// isIdentity reports whether c looks like a Burrow relay's own tunnel identity.
func isIdentity(c *x509.Certificate) bool {
	return len(c.DNSNames) == 1 && c.DNSNames[0] == identityName
}

func isUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

// certNames are the names a certificate is valid for.
func certNames(c *x509.Certificate) []string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

// isCertError reports whether err is the relay's certificate being refused.
func isCertError(err error) bool {
	var cve *tls.CertificateVerificationError
	var rce *RelayCertError
	return errors.As(err, &cve) || errors.As(err, &rce)
}

// pinMismatch explains a relay certificate that is not the pinned one.
func pinMismatch(leaf *x509.Certificate, pinned, relay string) error {
	fp := fingerprintOf(leaf.Raw)
	e := &RelayCertError{Fingerprint: fp, Err: errors.New("certificate does not match relay_fingerprint")}
	if !selfSigned(leaf) {
		e.Advice = fmt.Sprintf("the relay presents a certificate for %s signed by %q (%s), not the pinned relay_fingerprint %s: "+
			"if the relay has tunnel.hostname, delete relay_fingerprint and the agent verifies that certificate instead",
			strings.Join(certNames(leaf), ", "), leaf.Issuer.CommonName, fp, pinned)
		return e
	}
	e.Advice = fmt.Sprintf("the relay presents the certificate %s, not the pinned relay_fingerprint %s: "+
		"run `burrow relay fingerprint` on the relay; if it prints %s, the relay's identity was made anew "+
		"(a new state_dir): put it in relay_fingerprint; if not, something other than your relay answers at %s",
		fp, pinned, fp, relay)
	return e
}
