package relay_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// pebble is Let's Encrypt's test ACME server, run in the test process on
// loopback. Its VA really validates: it resolves every name to 127.0.0.1
// through a small DNS server, fetches HTTP-01 tokens from the relay's HTTP
// port and does TLS-ALPN-01 handshakes with the relay's HTTPS port.
type pebble struct {
	t        *testing.T
	ln       net.Listener
	URL      string // ACME directory
	WFERoot  string // PEM file of the root that signed the WFE's own HTTPS certificate
	wfeCert  tls.Certificate
	dnsAddr  string
	validity uint64

	db   *db.MemoryStore
	ca   *ca.CAImpl
	srv  *http.Server
	logs *testutil.SyncBuffer

	mu         sync.Mutex
	orders     [][]string     // identifiers of each new order, in order
	challenges map[string]int // challenge types the client asked pebble to validate
	relays     []net.IP       // the addresses names resolve to, in turn; 127.0.0.1 when empty
	lookups    map[string]int // A queries so far, by name
}

// newPebble binds the ACME directory's port; start runs pebble once the relay's ports are known.
func newPebble(t *testing.T, validity time.Duration) *pebble {
	t.Helper()
	// Full speed, real validation, fresh authorizations for every order.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")

	p := &pebble{t: t, logs: &testutil.SyncBuffer{}, challenges: map[string]int{}, lookups: map[string]int{}, validity: uint64(validity / time.Second)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.URL = "https://" + ln.Addr().String() + wfe.DirectoryPath

	rootPEM, cert := newTestCA(t, "pebble wfe test root", []net.IP{net.IPv4(127, 0, 0, 1)}, "localhost")
	p.wfeCert = cert
	p.WFERoot = filepath.Join(t.TempDir(), "wfe-root.pem")
	if err := os.WriteFile(p.WFERoot, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	p.dnsAddr = startDNS(t, p.resolve)
	t.Cleanup(func() {
		if p.srv != nil {
			p.srv.Close()
		} else {
			ln.Close()
		}
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.logs)
		}
	})
	return p
}

func (p *pebble) start(httpPort, tlsPort int) {
	logger := log.New(p.logs, "pebble ", log.Lmicroseconds)
	p.db = db.NewMemoryStore()
	p.ca = ca.New(logger, p.db, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "test", ValidityPeriod: p.validity},
	})
	v := va.New(logger, httpPort, tlsPort, false, p.dnsAddr, p.db)
	w := wfe.New(logger, p.db, v, p.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	p.srv = &http.Server{
		Handler:   p.observe(w.Handler()),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{p.wfeCert}},
		ErrorLog:  logger,
	}
	go p.srv.ServeTLS(p.ln, "", "")
}

// observe records the orders and the challenge types asked for, from the JWS payloads.
func (p *pebble) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var jws struct{ Payload string }
			_ = json.Unmarshal(body, &jws)
			payload, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
			switch {
			case r.URL.Path == "/order-plz":
				var o struct{ Identifiers []struct{ Value string } }
				_ = json.Unmarshal(payload, &o)
				var names []string
				for _, id := range o.Identifiers {
					names = append(names, id.Value)
				}
				p.mu.Lock()
				p.orders = append(p.orders, names)
				p.mu.Unlock()
			case strings.HasPrefix(r.URL.Path, "/chalZ/") && len(payload) > 0:
				// A non-empty payload ({}) asks pebble to validate this challenge.
				if c := p.db.GetChallengeByID(strings.TrimPrefix(r.URL.Path, "/chalZ/")); c != nil {
					c.RLock()
					typ := c.Type
					c.RUnlock()
					p.mu.Lock()
					p.challenges[typ]++
					p.mu.Unlock()
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// alternate makes each name resolve to the given addresses in turn, one per
// A query: the VA validates each challenge from several perspectives, so with
// two relays every challenge reaches both.
func (p *pebble) alternate(relays ...net.IP) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.relays = relays
}

// resolve is the address of name's next A answer.
func (p *pebble) resolve(name string) net.IP {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.relays) == 0 {
		return net.IPv4(127, 0, 0, 1)
	}
	n := p.lookups[name]
	p.lookups[name]++
	return p.relays[n%len(p.relays)]
}

// Orders are the identifiers of every order so far.
func (p *pebble) Orders() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.orders...)
}

func (p *pebble) ordersFor(name string) int {
	n := 0
	for _, o := range p.Orders() {
		for _, id := range o {
			if id == name {
				n++
			}
		}
	}
	return n
}

// Challenges counts the challenge types validated so far.
func (p *pebble) Challenges() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[string]int{}
	for k, v := range p.challenges {
		m[k] = v
	}
	return m
}

// Roots is the pool of pebble's issuing root, to verify the relay's certificates.
func (p *pebble) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	for i := 0; i < p.ca.GetNumberOfRootCerts(); i++ {
		pool.AddCert(p.ca.GetRootCert(i).Cert)
	}
	return pool
}

// RootFile writes pebble's issuing root as PEM, for an agent's ca_file.
func (p *pebble) RootFile() string {
	path := filepath.Join(p.t.TempDir(), "pebble-root.pem")
	var b []byte
	for i := 0; i < p.ca.GetNumberOfRootCerts(); i++ {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.ca.GetRootCert(i).Cert.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// startDNS answers A queries with the address resolve gives for the name
// (and nothing else), over TCP as pebble's VA asks.
func startDNS(t *testing.T, resolve func(name string) net.IP) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   resolve(question.Name),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("dns server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownContext(ctx)
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("dns server: %v", err)
		}
	})
	return ln.Addr().String()
}

// newTestCA makes a root and a leaf signed by it for the given addresses;
// it returns the root as PEM and the leaf with its key.
func newTestCA(t *testing.T, name string, ips []net.IP, dnsNames ...string) ([]byte, tls.Certificate) {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ = x509.ParseCertificate(rootDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name + " leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, root, &leafKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}
