package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

// startPublicRelay runs a relay with cfg's public side on loopback ports. With
// p, pebble starts once the relay's HTTP and HTTPS ports are bound.
func startPublicRelay(t *testing.T, cfg relay.Config, acme *relay.ACMETestOptions, p *pebble) *harness {
	t.Helper()
	const token = "test-token"
	hash := relaytest.Grant("", token).TokenSHA256
	for i := range cfg.Agents {
		cfg.Agents[i].TokenSHA256 = hash
	}
	cfg.Tunnel.Listen = "127.0.0.1:0"
	if p != nil {
		// The relay talks to pebble's directory over HTTPS, trusting only the root of pebble's test certificate.
		cfg.TLS.ACME = relay.ACMEConfig{CA: p.URL, CARoot: p.WFERoot, Email: "owner@example.test"}
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	s, err := relay.New(cfg, testLogger(t, "relay"))
	if err != nil {
		t.Fatal(err)
	}
	if acme != nil {
		s.SetACMETestOptions(*acme)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if p != nil {
		httpPort := 0
		if a := s.HTTPAddr(); a != nil {
			httpPort = a.(*net.TCPAddr).Port
		}
		p.start(httpPort, s.HTTPSAddr().(*net.TCPAddr).Port)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{relay: s, token: token, cancel: cancel, done: make(chan error, 1)}
	if a := s.HTTPAddr(); a != nil {
		h.public = "http://" + a.String()
	}
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

// newOrigin is a Stash stand-in: it echoes what it saw as JSON, and at
// /graphql it is a websocket echo with subprotocol graphql-transport-ws.
func newOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/graphql" {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"graphql-transport-ws"}})
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, b, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, b); err != nil {
					return
				}
			}
		}
		seen := map[string]string{"host": r.Host, "path": r.URL.RequestURI(), "proto": r.Proto}
		for _, k := range []string{"X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Host", "X-Forwarded-For"} {
			seen[k] = r.Header.Get(k)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(seen)
	}))
	t.Cleanup(origin.Close)
	return origin
}

// httpsClient speaks HTTP/1.1 (or HTTP/2) to the relay at addr whatever the
// URL's host, and verifies the certificate against roots for that host.
func httpsClient(t *testing.T, roots *x509.CertPool, addr string, h2 bool) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func http3Client(t *testing.T, roots *x509.CertPool, addr string) *http.Client {
	tr := &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, addr, tlsCfg, cfg)
		},
	}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// seen does a request and decodes what the origin saw.
func seen(t *testing.T, c *http.Client, method, url string) (*http.Response, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	got := map[string]string{}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%s: %v: %s", url, err, body)
		}
	}
	return resp, got
}

// servedCert does a TLS handshake with addr for name and returns the leaf, verified against roots.
func servedCert(addr, name string, roots *x509.CertPool, alpn ...string) (*x509.Certificate, error) {
	if alpn == nil {
		alpn = []string{"http/1.1"}
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: name, RootCAs: roots, NextProtos: alpn}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func waitForCert(t *testing.T, addr, name string, roots *x509.CertPool, alpn ...string) *x509.Certificate {
	t.Helper()
	var cert *x509.Certificate
	testutil.WaitFor(t, 30*time.Second, "a certificate for "+name, func() bool {
		var err error
		cert, err = servedCert(addr, name, roots, alpn...)
		return err == nil
	})
	return cert
}

func portString(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// TestHTTPSWithACME: certificates from a real ACME CA (pebble) through HTTP-01,
// served over HTTP/1.1, HTTP/2 and HTTP/3; on-demand only for names an agent
// serves; redirect, HSTS, Alt-Svc; websockets; the tunnel's public name.
func TestHTTPSWithACME(t *testing.T) {
	p := newPebble(t, 90*24*time.Hour)
	origin := newOrigin(t)
	h := startPublicRelay(t, relay.Config{
		Public: relay.PublicConfig{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", RedirectHTTP: true, HSTS: true},
		Tunnel: relay.TunnelConfig{Hostname: "relay.example.test"},
		Agents: []relay.AgentGrant{{Name: "nas", Hosts: []string{"stash.example.test", "*.home.example.test"}}},
	}, &relay.ACMETestOptions{DisableTLSALPN01: true}, p)
	httpsAddr := h.relay.HTTPSAddr().String()
	port := portString(h.relay.HTTPSAddr())
	roots := p.Roots()

	_, welcomes := runAgent(t, h.relay.TunnelAddr().String(), h.relay.TunnelFingerprint(), h.token, "quic", []agent.Route{
		{Host: "stash.example.test", Service: origin.URL},
		{Host: "media.home.example.test", Service: origin.URL},
	})
	var w *protocol.Welcome
	select {
	case w = <-welcomes:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	start := time.Now()
	waitForCert(t, httpsAddr, "stash.example.test", roots)
	t.Logf("certificate for stash.example.test after %v", time.Since(start).Round(time.Millisecond))

	t.Run("welcome lists https first", func(t *testing.T) {
		want := []string{"https://stash.example.test:" + port, "http://stash.example.test:" + portString(h.relay.HTTPAddr())}
		for _, a := range w.Accepted {
			if a.Host == "stash.example.test" && strings.Join(a.PublicURLs, " ") != strings.Join(want, " ") {
				t.Errorf("public URLs %q, want %q", a.PublicURLs, want)
			}
		}
	})

	url := "https://stash.example.test:" + port + "/scene/1?x=y"
	for _, tc := range []struct {
		name   string
		client *http.Client
		proto  string
	}{
		{"http1", httpsClient(t, roots, httpsAddr, false), "HTTP/1.1"},
		{"http2", httpsClient(t, roots, httpsAddr, true), "HTTP/2.0"},
		{"http3", http3Client(t, roots, httpsAddr), "HTTP/3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := seen(t, tc.client, "GET", url)
			if resp.StatusCode != 200 || resp.Proto != tc.proto {
				t.Fatalf("status %d proto %s, want 200 %s", resp.StatusCode, resp.Proto, tc.proto)
			}
			if got["X-Forwarded-Proto"] != "https" || got["X-Forwarded-Port"] != port || got["path"] != "/scene/1?x=y" || got["host"] != "stash.example.test:"+port {
				t.Errorf("origin saw %v", got)
			}
			if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=31536000" {
				t.Errorf("HSTS %q", v)
			}
			altSvc := resp.Header.Get("Alt-Svc")
			if tc.proto != "HTTP/3.0" && !strings.Contains(altSvc, `h3=":`+port+`"`) {
				t.Errorf("Alt-Svc %q, want h3 on port %s", altSvc, port)
			}
			if cs := resp.TLS; cs == nil || len(cs.VerifiedChains) == 0 {
				t.Errorf("no verified chain")
			}
		})
	}

	t.Run("on-demand certificate for a served wildcard name", func(t *testing.T) {
		if n := p.ordersFor("media.home.example.test"); n != 0 {
			t.Fatalf("%d orders for media.home.example.test before any handshake", n)
		}
		resp, got := seen(t, httpsClient(t, roots, httpsAddr, true), "GET", "https://media.home.example.test:"+port+"/")
		if resp.StatusCode != 200 || got["X-Forwarded-Proto"] != "https" {
			t.Fatalf("status %d, origin saw %v", resp.StatusCode, got)
		}
		if n := p.ordersFor("media.home.example.test"); n != 1 {
			t.Errorf("%d orders for media.home.example.test, want 1", n)
		}
	})

	t.Run("no certificate for names no agent serves", func(t *testing.T) {
		before := len(p.Orders())
		for _, name := range []string{"scanner.home.example.test", "random.example.test", "home.example.test"} {
			if _, err := servedCert(httpsAddr, name, roots); err == nil {
				t.Errorf("%s: handshake succeeded", name)
			}
			if n := p.ordersFor(name); n != 0 {
				t.Errorf("%s: %d orders at the CA", name, n)
			}
		}
		// No SNI at all.
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Errorf("handshake without SNI succeeded")
		}
		if after := len(p.Orders()); after != before {
			t.Errorf("orders went from %d to %d: %v", before, after, p.Orders())
		}
	})

	t.Run("plain http redirects", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		get := func(path, host string) *http.Response {
			req, _ := http.NewRequest("GET", h.public+path, nil)
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		resp := get("/scene/1?x=y", "stash.example.test")
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != url {
			t.Errorf("redirect: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), url)
		}
		if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
			t.Errorf("HSTS on plain http: %q", v)
		}
		// A challenge path is served, not redirected (here: proxied to the origin).
		resp = get("/.well-known/acme-challenge/some-token", "stash.example.test")
		if resp.StatusCode != 200 {
			t.Errorf("challenge path: %d", resp.StatusCode)
		}
		// A host not granted gets the unknown-host page, not a redirect.
		if resp = get("/", "nobody.example.org"); resp.StatusCode != 404 {
			t.Errorf("unknown host: %d", resp.StatusCode)
		}
	})

	t.Run("websocket over HTTP/1.1 TLS", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "wss://stash.example.test:"+port+"/graphql", &websocket.DialOptions{
			HTTPClient:   httpsClient(t, roots, httpsAddr, false),
			Subprotocols: []string{"graphql-transport-ws"},
		})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if c.Subprotocol() != "graphql-transport-ws" || resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("subprotocol %q, headers %v", c.Subprotocol(), resp.Header)
		}
		msg := `{"type":"connection_init"}`
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil || string(b) != msg {
			t.Fatalf("echo %q, %v", b, err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("websocket over HTTP/3 extended CONNECT", func(t *testing.T) {
		testWebsocketHTTP3(t, roots, httpsAddr, "stash.example.test", port)
	})

	t.Run("tunnel hostname has the public certificate", func(t *testing.T) {
		waitForCert(t, h.relay.TunnelAddr().String(), "relay.example.test", roots, protocol.ALPN)
		// Without the name (an agent that dials an IP address), the pinned identity.
		c, err := tls.Dial("tcp", h.relay.TunnelAddr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{protocol.ALPN}})
		if err != nil {
			t.Fatal(err)
		}
		if fp := relay.Fingerprint(c.ConnectionState().PeerCertificates[0].Raw); fp != h.relay.TunnelFingerprint() {
			t.Errorf("tunnel without SNI served %s, want the identity %s", fp, h.relay.TunnelFingerprint())
		}
		c.Close()
		// An agent that verifies the relay by CA and name, no pin.
		a, err := agent.New(agent.Config{
			Relay:      h.relay.TunnelAddr().String(),
			ServerName: "relay.example.test",
			CAFile:     p.RootFile(),
			Token:      h.token,
			Transport:  "tcp",
			Routes:     []agent.Route{{Host: "x.home.example.test", Service: origin.URL}},
		}, testLogger(t, "agent2"))
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *protocol.Welcome, 1)
		a.OnWelcome = func(w *protocol.Welcome) {
			select {
			case got <- w:
			default:
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		defer func() { cancel(); <-done }()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("agent verifying the relay by CA did not connect")
		}
	})

	t.Run("challenges were HTTP-01", func(t *testing.T) {
		ch := p.Challenges()
		if ch["http-01"] == 0 || ch["tls-alpn-01"] != 0 {
			t.Errorf("challenges %v, want only http-01", ch)
		}
	})
}

// TestACMETLSALPNAndRenewal: TLS-ALPN-01 on the HTTPS port, and short-lived
// certificates renewed in the background and served without a restart.
// Renewal follows the certificate's lifetime, not ARI: pebble now and then
// answers a renewal order that names the certificate it replaces with
// "HTTP 500 could not find an order for the given certificate", after which
// certmagic backs off for longer than the test waits.
func TestACMETLSALPNAndRenewal(t *testing.T) {
	p := newPebble(t, 8*time.Second)
	origin := newOrigin(t)
	h := startPublicRelay(t, relay.Config{
		Public: relay.PublicConfig{HTTPS: "127.0.0.1:0"},
		Agents: []relay.AgentGrant{{Name: "nas", Hosts: []string{"stash.example.test"}}},
	}, &relay.ACMETestOptions{RenewCheckInterval: 500 * time.Millisecond, DisableARI: true}, p)
	startAgent(t, h, "tcp", []agent.Route{{Host: "stash.example.test", Service: origin.URL}})
	httpsAddr := h.relay.HTTPSAddr().String()
	roots := p.Roots()

	first := waitForCert(t, httpsAddr, "stash.example.test", roots)
	if ch := p.Challenges(); ch["tls-alpn-01"] == 0 || ch["http-01"] != 0 {
		t.Errorf("challenges %v, want only tls-alpn-01", ch)
	}
	var renewed *x509.Certificate
	testutil.WaitFor(t, 20*time.Second, "a renewed certificate", func() bool {
		c, err := servedCert(httpsAddr, "stash.example.test", roots)
		if err == nil && c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c
			return true
		}
		return false
	})
	if !renewed.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first one's %v", renewed.NotAfter, first.NotAfter)
	}
	if n := p.ordersFor("stash.example.test"); n < 2 {
		t.Errorf("%d orders, want a renewal order", n)
	}
	// (The renewal order may reuse the authorization, still valid at the CA, so it need not validate again.)
	if ch := p.Challenges(); ch["http-01"] != 0 {
		t.Errorf("challenges %v, want only tls-alpn-01", ch)
	}
	resp, got := seen(t, httpsClient(t, roots, httpsAddr, true), "GET", "https://stash.example.test:"+portString(h.relay.HTTPSAddr())+"/")
	if resp.StatusCode != 200 || got["X-Forwarded-Proto"] != "https" {
		t.Errorf("after renewal: %d %v", resp.StatusCode, got)
	}
}

// startStaticRelay runs a relay with a static certificate for stash.example.test
// (HTTP and HTTPS, no redirect, no HSTS) and an agent that serves it; roots verify the certificate.
func startStaticRelay(t *testing.T, state string) (*harness, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	rootPEM, cert := newTestCA(t, "static test root", nil, "stash.example.test")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)

	origin := newOrigin(t)
	h := startPublicRelay(t, relay.Config{
		Public:   relay.PublicConfig{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"},
		TLS:      relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
		StateDir: state,
		Agents:   []relay.AgentGrant{{Name: "nas", Hosts: []string{"stash.example.test"}}},
	}, nil, nil)
	startAgent(t, h, "quic", []agent.Route{{Host: "stash.example.test", Service: origin.URL}})
	return h, roots
}

// TestHTTPSStaticCertificate: tls.cert_file, no ACME; HSTS off; HTTP/2 does
// not offer extended CONNECT, so browsers open websockets over HTTP/1.1.
func TestHTTPSStaticCertificate(t *testing.T) {
	state := t.TempDir()
	h, roots := startStaticRelay(t, state)
	httpsAddr := h.relay.HTTPSAddr().String()
	port := portString(h.relay.HTTPSAddr())

	resp, got := seen(t, httpsClient(t, roots, httpsAddr, true), "GET", "https://stash.example.test:"+port+"/")
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || got["X-Forwarded-Proto"] != "https" || got["X-Forwarded-Port"] != port {
		t.Errorf("%d %s, origin saw %v", resp.StatusCode, resp.Proto, got)
	}
	if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
		t.Errorf("HSTS without public.hsts: %q", v)
	}
	// Plain HTTP without redirect_http still serves, as http.
	resp, body := get(t, h.public+"/", "stash.example.test")
	if resp.StatusCode != 200 || !strings.Contains(body, `"X-Forwarded-Proto":"http"`) {
		t.Errorf("plain http: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(state, "certmagic")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("certmagic storage exists with a static certificate: %v", err)
	}

	// The HTTP/2 SETTINGS must not carry ENABLE_CONNECT_PROTOCOL (RFC 8441).
	c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "stash.example.test", RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q", p)
	}
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if v, ok := sf.Value(http2.SettingEnableConnectProtocol); ok && v != 0 {
				t.Errorf("server offers extended CONNECT over HTTP/2")
			}
			break
		}
	}
}
