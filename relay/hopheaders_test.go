package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/relay"
)

// sentEverywhere are sent on every path: the hop-by-hop headers that HTTP/2
// and HTTP/3 can carry, and the forwarded headers with the client's own claims.
var sentEverywhere = [][2]string{
	{"Proxy-Authorization", "Basic Y2xpZW50OnNlY3JldA=="},
	{"Proxy-Authenticate", `Basic realm="client"`},
	{"Trailer", "X-Checksum"},
	{"Te", "trailers"}, // the only TE that HTTP/2 and HTTP/3 allow
	{"X-Forwarded-For", "6.6.6.6"},
	{"X-Real-Ip", "6.6.6.7"},
	{"X-Forwarded-Proto", "http"},
	{"X-Forwarded-Host", "claimed.example"},
	{"X-Forwarded-Port", "8080"},
	{"X-Forwarded-Prefix", "/claimed"},
	{"Forwarded", "for=6.6.6.6;proto=http"},
}

// sentHTTP1 are sent over HTTP/1.1 too: connection-specific headers, which
// HTTP/2 and HTTP/3 forbid. The upgrade adds "Upgrade" to Connection; on the
// other requests, Upgrade without that token asks for nothing.
var sentHTTP1 = [][2]string{
	{"Connection", "X-Hop-Custom, Keep-Alive"},
	{"X-Hop-Custom", "hop-by-hop because Connection names it"},
	{"Keep-Alive", "timeout=5"},
	{"Proxy-Connection", "keep-alive"},
	{"Upgrade", "websocket"},
	{"Te", "deflate"},
}

// watchedHeaders are the headers the service's view is compared on: every
// one sent, Transfer-Encoding (the body's framing), and User-Agent, which no
// client sends and which must not become Go's default on the way.
func watchedHeaders() []string {
	keys := []string{"Transfer-Encoding", "User-Agent"}
	for _, kv := range slices.Concat(sentEverywhere, sentHTTP1) {
		if !slices.Contains(keys, kv[0]) {
			keys = append(keys, kv[0])
		}
	}
	return keys
}

// TestHopByHopHeaders sends every hop-by-hop header, and forwarded headers
// with the client's own values, down every path by which a request reaches a
// service, on both tunnel transports, from an untrusted client and from a
// trusted proxy. Every path is held to the one expectation of wantSeen, so
// all paths hand the service the same headers: the forwarded ones, and no
// hop-by-hop header but the Connection and Upgrade an upgrade needs and the
// "Te: trailers" that httputil.ReverseProxy says for itself when the client
// accepts trailers.
func TestHopByHopHeaders(t *testing.T) {
	// Go's HTTP/2 server offers extended CONNECT only with this GODEBUG.
	if !rerunWithGODEBUG(t, "http2xconnect=1") {
		return
	}
	paths := []struct {
		name    string
		send    func(t *testing.T, c hopClient, path string) int // returns the status
		status  int
		upgrade bool // the service sees Connection: Upgrade and Upgrade: websocket
	}{
		{"h1 GET (stream transport)", sendHTTP1("GET"), 200, false},
		{"h1 POST with a body (fallback transport)", sendHTTP1("POST"), 200, false},
		{"h1 websocket upgrade", sendHTTP1("upgrade"), 101, true},
		{"h2 GET", sendHTTP2(http.MethodGet), 200, false},
		{"h2 websocket (extended CONNECT)", sendHTTP2(http.MethodConnect), 200, true},
		{"h3 GET", sendHTTP3(http.MethodGet), 200, false},
		{"h3 websocket (extended CONNECT)", sendHTTP3(http.MethodConnect), 200, true},
	}
	clients := []struct {
		name    string
		ip      string
		trusted bool
	}{
		{"untrusted client", "127.0.0.1", false},
		{"trusted proxy", "127.0.0.2", true},
	}

	origin, seen := newHeaderOrigin(t)
	addr, roots := startHopRelay(t, origin.URL, "127.0.0.2/32")
	port := portString(addr)
	n := 0
	for _, tr := range []string{"quic", "tcp"} {
		for _, cl := range clients {
			for _, p := range paths {
				t.Run(tr+"/"+cl.name+"/"+p.name, func(t *testing.T) {
					n++
					path := "/case" + strconv.Itoa(n)
					c := hopClient{addr: addr.String(), host: tr + ".example.test:" + port, ip: net.ParseIP(cl.ip), roots: roots}
					if got := p.send(t, c, "/stash"+path); got != p.status {
						t.Fatalf("status %d, want %d", got, p.status)
					}
					got := seen(path)
					if got == nil {
						t.Fatal("the request did not reach the service")
					}
					want := wantSeen(cl.trusted, cl.ip, c.host, port, p.upgrade)
					for _, k := range watchedHeaders() {
						if !slices.Equal(got[k], want[k]) {
							t.Errorf("the service saw %s: %q, want %q", k, got[k], want[k])
						}
					}
				})
			}
		}
	}
}

// wantSeen is what the service must see of the watched headers, whatever the
// path: from an untrusted client the relay's own forwarded values, from a
// trusted proxy its claims with the chain extended; Forwarded from neither.
func wantSeen(trusted bool, clientIP, host, port string, upgrade bool) http.Header {
	want := http.Header{
		"Te":                 {"trailers"}, // the relay's own word, as httputil.ReverseProxy says it
		"X-Forwarded-Prefix": {"/stash"},
		"X-Forwarded-For":    {clientIP},
		"X-Real-Ip":          {clientIP},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {host},
		"X-Forwarded-Port":   {port},
	}
	if trusted {
		want["X-Forwarded-For"] = []string{"6.6.6.6, " + clientIP}
		want["X-Real-Ip"] = []string{"6.6.6.7"}
		want["X-Forwarded-Proto"] = []string{"http"}
		want["X-Forwarded-Host"] = []string{"claimed.example"}
		want["X-Forwarded-Port"] = []string{"8080"}
	}
	if upgrade {
		want["Connection"] = []string{"Upgrade"}
		want["Upgrade"] = []string{"websocket"}
	}
	return want
}

// newHeaderOrigin is a service that keeps the watched headers of each request
// by path, and accepts websockets (and closes them at once).
func newHeaderOrigin(t *testing.T) (*httptest.Server, func(path string) http.Header) {
	t.Helper()
	watched := watchedHeaders()
	var mu sync.Mutex
	byPath := map[string]http.Header{} // guarded by mu
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := http.Header{}
		for _, k := range watched {
			if v, ok := r.Header[k]; ok {
				h[k] = v
			}
		}
		mu.Lock()
		byPath[r.URL.Path] = h
		mu.Unlock()
		if r.Header.Get("Sec-WebSocket-Key") != "" {
			if c, err := websocket.Accept(w, r, nil); err == nil {
				c.CloseNow()
			}
			return
		}
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(origin.Close)
	return origin, func(path string) http.Header {
		mu.Lock()
		defer mu.Unlock()
		return byPath[path]
	}
}

// startHopRelay runs a relay with HTTPS (a static certificate), trusting
// trusted as a proxy, and two agents in front of service: one over QUIC for
// quic.example.test/stash, one over TCP for tcp.example.test/stash.
func startHopRelay(t *testing.T, service, trusted string) (net.Addr, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	rootPEM, cert := newTestCA(t, "hop test root", nil, "quic.example.test", "tcp.example.test")
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)

	h := startPublicRelay(t, relay.Config{
		Public:         relay.PublicConfig{HTTPS: "127.0.0.1:0"},
		TLS:            relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix(trusted)},
		Agents:         []relay.AgentGrant{{Name: "nas", Hosts: []string{"quic.example.test", "tcp.example.test"}}},
	}, nil, nil)
	for _, tr := range []string{"quic", "tcp"} {
		startAgent(t, h, tr, []agent.Route{{Host: tr + ".example.test", Prefix: "/stash", Service: service, AllowUnauthenticated: true}})
	}
	return h.relay.HTTPSAddr(), roots
}

// hopClient is one client of the relay's HTTPS port (TCP and UDP).
type hopClient struct {
	addr  string // the relay's HTTPS address
	host  string // Host, or :authority: a route's host and the port
	ip    net.IP // the client's own address
	roots *x509.CertPool
}

func (c hopClient) tlsConfig(alpn string) *tls.Config {
	name, _, _ := net.SplitHostPort(c.host)
	return &tls.Config{ServerName: name, RootCAs: c.roots, NextProtos: []string{alpn}}
}

func (c hopClient) dialTLS(t *testing.T, alpn string) *tls.Conn {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: c.ip}, Timeout: 5 * time.Second}, Config: c.tlsConfig(alpn)}
	conn, err := d.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn.(*tls.Conn)
}

// sendHTTP1 writes the request by hand, since net/http's client would drop
// or rewrite some of the headers: kind is GET, POST (with a chunked body) or
// upgrade (a websocket).
func sendHTTP1(kind string) func(t *testing.T, c hopClient, path string) int {
	return func(t *testing.T, c hopClient, path string) int {
		conn := c.dialTLS(t, "http/1.1")
		var b strings.Builder
		method := kind
		if kind == "upgrade" {
			method = http.MethodGet
		}
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, c.host)
		for _, kv := range slices.Concat(sentEverywhere, sentHTTP1) {
			if kv[0] == "Connection" && kind == "upgrade" {
				kv[1] = "Upgrade, " + kv[1]
			}
			fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
		}
		body := ""
		switch kind {
		case "upgrade":
			b.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
		case http.MethodPost:
			b.WriteString("Transfer-Encoding: chunked\r\n")
			body = "5\r\nhello\r\n0\r\n\r\n"
		}
		b.WriteString("\r\n" + body)
		if _, err := io.WriteString(conn, b.String()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
}

// sendHTTP2 speaks HTTP/2 frames, since net/http's client refuses the
// :protocol pseudo-header of extended CONNECT.
func sendHTTP2(method string) func(t *testing.T, c hopClient, path string) int {
	return func(t *testing.T, c hopClient, path string) int {
		conn := c.dialTLS(t, "h2")
		io.WriteString(conn, http2.ClientPreface)
		fr := http2.NewFramer(conn, conn)
		fr.WriteSettings()
		sr := &h2Stream{t: t, fr: fr, dec: hpack.NewDecoder(4096, nil)}
		sr.waitSettings()
		fields := [][2]string{{":method", method}, {":scheme", "https"}, {":path", path}, {":authority", c.host}}
		if method == http.MethodConnect {
			fields = append(fields, [2]string{":protocol", "websocket"}, [2]string{"sec-websocket-version", "13"})
		}
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, kv := range slices.Concat(fields, sentEverywhere) {
			enc.WriteField(hpack.HeaderField{Name: strings.ToLower(kv[0]), Value: kv[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{
			StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: method != http.MethodConnect,
		}); err != nil {
			t.Fatal(err)
		}
		status, _ := strconv.Atoi(sr.headers()[":status"])
		return status
	}
}

// sendHTTP3 sends the request on its own QUIC connection from the client's address.
func sendHTTP3(method string) func(t *testing.T, c hopClient, path string) int {
	return func(t *testing.T, c hopClient, path string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: c.ip})
		if err != nil {
			t.Fatal(err)
		}
		defer udp.Close()
		raddr, err := net.ResolveUDPAddr("udp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		qc, err := quic.Dial(ctx, udp, raddr, c.tlsConfig(http3.NextProtoH3), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer qc.CloseWithError(0, "")
		cc := (&http3.Transport{}).NewClientConn(qc)
		select {
		case <-cc.ReceivedSettings():
		case <-ctx.Done():
			t.Fatal("no SETTINGS")
		}
		rs, err := cc.OpenRequestStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequestWithContext(ctx, method, "https://"+c.host+path, nil)
		if method == http.MethodConnect {
			req.Proto = "websocket"
			req.Header.Set("Sec-WebSocket-Version", "13")
		}
		req.Header.Set("User-Agent", "") // none, rather than quic-go's
		for _, kv := range sentEverywhere {
			req.Header.Add(kv[0], kv[1])
		}
		if err := rs.SendRequestHeader(req); err != nil {
			t.Fatal(err)
		}
		if method != http.MethodConnect {
			rs.Close() // no body
		}
		resp, err := rs.ReadResponse()
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
}
