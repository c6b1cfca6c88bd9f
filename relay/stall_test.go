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
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// stallHost is the name the limits tests publish.
const stallHost = "stall.test"

// limitedRelay is a relay with limits, serving stallHost over HTTP, HTTPS
// (HTTP/1.1, HTTP/2) and HTTP/3, and an agent connected over transport.
type limitedRelay struct {
	*harness
	roots *x509.CertPool
	addr  string // HTTPS, TCP and UDP
	base  string // https://stall.test:port
	port  string
}

func startLimitedRelay(t *testing.T, limits relay.LimitsConfig, transport, service string) *limitedRelay {
	t.Helper()
	dir := t.TempDir()
	rootPEM, cert := newTestCA(t, "limits test root", nil, stallHost)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	h := startPublicRelay(t, relay.Config{
		Public: relay.PublicConfig{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"},
		TLS:    relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
		Agents: []relay.AgentGrant{{Name: "nas", Hosts: []string{stallHost}}},
		Limits: limits,
	}, nil, nil)
	startAgent(t, h, transport, []agent.Route{{Host: stallHost, Service: service, AllowUnauthenticated: true}})
	port := portString(h.relay.HTTPSAddr())
	return &limitedRelay{harness: h, roots: roots, addr: h.relay.HTTPSAddr().String(), base: "https://" + stallHost + ":" + port, port: port}
}

// client speaks proto ("http1", "http2" or "http3") to the relay.
func (l *limitedRelay) client(t *testing.T, proto string) *http.Client {
	switch proto {
	case "http1":
		return httpsClient(t, l.roots, l.addr, false)
	case "http2":
		return httpsClient(t, l.roots, l.addr, true)
	default:
		return http3Client(t, l.roots, l.addr)
	}
}

var protos = []string{"http1", "http2", "http3"}

// writeZeros writes n zero bytes to w in 64 KiB writes.
func writeZeros(w io.Writer, n int64) (int64, error) {
	buf := make([]byte, 64<<10)
	var sent int64
	for sent < n {
		m, err := w.Write(buf[:min(int64(len(buf)), n-sent)])
		sent += int64(m)
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// TestStalledVisitorIsCut: a visitor that asks for a large answer and reads
// none of it is cut after limits.stalled_client, and its tunnel stream is
// reset, so the service's writes fail long before the end of the answer.
// Over HTTP/2 and HTTP/3, another request on the same connection, which
// reads, gets its whole answer.
func TestStalledVisitorIsCut(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		for _, proto := range protos {
			t.Run(tr+"/"+proto, func(t *testing.T) {
				const size = 1 << 30 // far more than every buffer on the way holds
				type result struct {
					n   int64
					err error
				}
				big := make(chan result, 1)
				bigCut := make(chan struct{})
				origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch r.URL.Path {
					case "/big":
						w.Header().Set("Content-Length", strconv.Itoa(size))
						n, err := writeZeros(w, size)
						if err != nil {
							close(bigCut)
						}
						big <- result{n, err}
					case "/sibling":
						// Half of the answer now, the rest once /big was cut.
						w.Header().Set("Content-Length", strconv.Itoa(2<<20))
						writeZeros(w, 1<<20)
						w.(http.Flusher).Flush()
						select {
						case <-bigCut:
						case <-r.Context().Done():
							return
						}
						writeZeros(w, 1<<20)
					}
				}))
				defer origin.Close()
				l := startLimitedRelay(t, relay.LimitsConfig{StalledClient: 500 * time.Millisecond}, tr, origin.URL)
				c := l.client(t, proto)

				var conns []any
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { conns = append(conns, i.Conn) }}
				do := func(path string) *http.Response {
					t.Helper()
					req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", l.base+path, nil)
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("GET %s: %v", path, err)
					}
					if resp.StatusCode != 200 {
						t.Fatalf("GET %s: %d", path, resp.StatusCode)
					}
					return resp
				}
				sibling := make(chan error, 1)
				if proto != "http1" {
					resp := do("/sibling")
					go func() {
						defer resp.Body.Close()
						n, err := io.Copy(io.Discard, resp.Body)
						if err == nil && n != 2<<20 {
							err = fmt.Errorf("read %d bytes of %d", n, 2<<20)
						}
						sibling <- err
					}()
				}
				resp := do("/big")
				defer resp.Body.Close()
				select {
				case r := <-big:
					if r.err == nil {
						t.Fatalf("the service wrote all %d bytes to a visitor that reads nothing", size)
					}
					t.Logf("the service wrote %d MiB before its connection was closed", r.n>>20)
					if r.n > 64<<20 {
						t.Errorf("the service wrote %d MiB to a visitor that reads nothing, want under 64 MiB", r.n>>20)
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the service is still writing 20 s after the visitor stopped reading")
				}
				if proto != "http1" {
					if err := <-sibling; err != nil {
						t.Errorf("the other request on the connection: %v", err)
					}
					if proto == "http2" && (len(conns) != 2 || conns[0] != conns[1]) {
						t.Errorf("the two requests did not share one connection: %v", conns)
					}
				}
				if _, err := io.Copy(io.Discard, resp.Body); err == nil {
					t.Error("the stalled visitor's answer ended as if complete")
				}
			})
		}
	}
}

// TestSlowReaderIsNotCut: a visitor that reads a large answer slowly, a
// little every fraction of limits.stalled_client, is never cut, though the
// answer takes several times that limit. A reader's progress reaches the
// relay in steps: HTTP/2 and HTTP/3 flow-control credit is sent once about
// half the receive window was read (so this visitor keeps small windows, as
// a slow client's are), and the kernel wakes a writer once a third of the
// socket's send buffer (up to 4 MiB on Linux) is free again, for nginx as
// for the relay; so the visitor reads at least that much per limit.
func TestSlowReaderIsNotCut(t *testing.T) {
	const (
		limit  = time.Second
		size   = 16 << 20
		chunk  = 128 << 10
		every  = limit / 40 // 5 MiB/s
		window = 256 << 10
	)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			writeZeros(w, size)
		}
	}))
	t.Cleanup(origin.Close) // after the parallel subtests
	for _, tr := range []string{"quic", "tcp"} {
		for _, proto := range protos {
			t.Run(tr+"/"+proto, func(t *testing.T) {
				t.Parallel() // mostly asleep
				l := startLimitedRelay(t, relay.LimitsConfig{StalledClient: limit}, tr, origin.URL)
				resp, err := l.smallWindowClient(t, proto, window).Get(l.base + "/big")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				start := time.Now()
				for got := int64(0); got < size; {
					n, err := io.CopyN(io.Discard, resp.Body, chunk)
					got += n
					if err != nil {
						t.Fatalf("after %d of %d bytes in %v: %v", got, size, time.Since(start).Round(time.Millisecond), err)
					}
					// Paced by the total, so that a slow read is made up for.
					time.Sleep(time.Until(start.Add(time.Duration(got / chunk * int64(every)))))
				}
				t.Logf("read %d MiB in %v", size>>20, time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// smallWindowClient is client with receive windows of about window bytes:
// the TCP socket's buffer, and HTTP/2's or QUIC's flow control.
func (l *limitedRelay) smallWindowClient(t *testing.T, proto string, window int) *http.Client {
	tlsConf := &tls.Config{RootCAs: l.roots}
	if proto == "http3" {
		tr := &http3.Transport{
			TLSClientConfig: tlsConf,
			QUICConfig: &quic.Config{
				InitialStreamReceiveWindow: uint64(window), MaxStreamReceiveWindow: uint64(window),
				InitialConnectionReceiveWindow: uint64(2 * window), MaxConnectionReceiveWindow: uint64(2 * window),
			},
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				return quic.DialAddrEarly(ctx, l.addr, tlsCfg, cfg)
			},
		}
		t.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	tr := &http.Transport{
		TLSClientConfig: tlsConf,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", l.addr)
			if err == nil {
				err = c.(*net.TCPConn).SetReadBuffer(window) // caps the window the relay is offered
			}
			return c, err
		},
		ForceAttemptHTTP2: proto == "http2",
		HTTP2:             &http.HTTP2Config{MaxReceiveBufferPerStream: window, MaxReceiveBufferPerConnection: 2 * window},
	}
	if proto == "http1" {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestStalledUploadIsEnded: an upload that sends nothing more of its body
// for limits.stalled_client is ended: the service's read of the body fails
// (its tunnel stream was reset) and the visitor gets 408.
func TestStalledUploadIsEnded(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		for _, proto := range protos {
			t.Run(tr+"/"+proto, func(t *testing.T) {
				read := make(chan error, 1)
				origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/upload" {
						_, err := io.Copy(io.Discard, r.Body)
						read <- err
					}
				}))
				defer origin.Close()
				l := startLimitedRelay(t, relay.LimitsConfig{StalledClient: 500 * time.Millisecond}, tr, origin.URL)
				body, stalled := io.Pipe()
				defer stalled.Close()
				go func() {
					// A start, then nothing: the visitor's upload stalls.
					stalled.Write(make([]byte, 64<<10))
				}()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				// The client waits for its body's reader before it gives up.
				context.AfterFunc(ctx, func() { stalled.CloseWithError(ctx.Err()) })
				req, _ := http.NewRequestWithContext(ctx, "POST", l.base+"/upload", body)
				resp, err := l.client(t, proto).Do(req)
				if err != nil {
					t.Fatalf("the visitor got no answer: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Errorf("status %d, want 408", resp.StatusCode)
				}
				select {
				case err := <-read:
					if err == nil {
						t.Error("the service read the stalled upload to a clean end")
					}
				case <-time.After(20 * time.Second):
					t.Fatal("the service is still reading the upload 20 s after it stalled")
				}
			})
		}
	}
}

// TestSlowServiceGetsGatewayTimeout: a service that sends no response
// headers for limits.response_header gets the visitor a 504 page, and its
// tunnel stream is reset, so the service sees the request go away. Both ways
// to the service: the relay's stream pool (GET) and http.Transport (a request
// with a body).
func TestSlowServiceGetsGatewayTimeout(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		gone := make(chan string, 1)
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/slow" {
				return
			}
			io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
				gone <- r.Method
			case <-time.After(20 * time.Second):
			}
		}))
		defer origin.Close()
		l := startLimitedRelay(t, relay.LimitsConfig{ResponseHeader: 500 * time.Millisecond}, tr, origin.URL)
		for _, method := range []string{"GET", "POST"} {
			t.Run(tr+"/"+method, func(t *testing.T) {
				var body io.Reader
				if method == "POST" {
					body = strings.NewReader(`{"query":"{ slow }"}`)
				}
				req, _ := http.NewRequest(method, l.public+"/slow", body)
				req.Host = stallHost
				resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				page, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(page), "did not start answering in time") ||
					!strings.Contains(string(page), "limits.response_header") {
					t.Errorf("%d %s", resp.StatusCode, page)
				}
				select {
				case m := <-gone:
					if m != method {
						t.Errorf("the service saw its %s request go away, want %s", m, method)
					}
				case <-time.After(10 * time.Second):
					t.Error("the service's request is still there 10 s after the 504")
				}
			})
		}
	}
}

// TestIdleWebSocketIsNotCut: WebSockets (an HTTP/1.1 upgrade, and HTTP/3
// extended CONNECT) stay up through silence many times limits.stalled_client
// and limits.response_header, as Stash's subscriptions must.
func TestIdleWebSocketIsNotCut(t *testing.T) {
	const limit = 200 * time.Millisecond
	origin := newOrigin(t)
	type socket struct {
		name string
		echo func(msg string) error
	}
	var sockets []socket
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tr := range []string{"quic", "tcp"} {
		l := startLimitedRelay(t, relay.LimitsConfig{StalledClient: limit, ResponseHeader: limit}, tr, origin.URL)
		c, _, err := websocket.Dial(ctx, "wss://"+stallHost+":"+l.port+"/graphql", &websocket.DialOptions{
			HTTPClient:   httpsClient(t, l.roots, l.addr, false),
			Subprotocols: []string{"graphql-transport-ws"},
		})
		if err != nil {
			t.Fatalf("%s: dial: %v", tr, err)
		}
		defer c.CloseNow()
		sockets = append(sockets, socket{tr + "/http1", func(msg string) error {
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return err
			}
			_, b, err := c.Read(ctx)
			if err == nil && string(b) != msg {
				err = fmt.Errorf("echo %q, want %q", b, msg)
			}
			return err
		}})
		sockets = append(sockets, socket{tr + "/http3", dialHTTP3Websocket(t, ctx, l)})
	}
	for _, s := range sockets {
		if err := s.echo(`{"type":"connection_init"}`); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	time.Sleep(10 * limit) // silence on every socket
	for _, s := range sockets {
		if err := s.echo(`{"id":"1","type":"subscribe"}`); err != nil {
			t.Errorf("%s after %v of silence: %v", s.name, 10*limit, err)
		}
	}
}

// dialHTTP3Websocket opens a websocket as a browser does over HTTP/3
// (extended CONNECT) and returns its echo check.
func dialHTTP3Websocket(t *testing.T, ctx context.Context, l *limitedRelay) func(msg string) error {
	t.Helper()
	qc, err := quic.DialAddr(ctx, l.addr, &tls.Config{ServerName: stallHost, RootCAs: l.roots, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
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
	req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, l.base+"/graphql", nil)
	req.Proto = "websocket"
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Protocol", "graphql-transport-ws")
	if err := rs.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.ReadResponse()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("extended CONNECT: %v %v", resp, err)
	}
	br := bufio.NewReader(rs)
	return func(msg string) error {
		if _, err := rs.Write(maskedFrame(0x1, []byte(msg))); err != nil {
			return err
		}
		op, payload, err := readFrame(br)
		if err == nil && (op != 0x1 || string(payload) != msg) {
			err = fmt.Errorf("echo op %d %q, want %q", op, payload, msg)
		}
		return err
	}
}

// TestIdleWebSocketHTTP2IsNotCut: the same over HTTP/2 extended CONNECT,
// which Go's server offers with GODEBUG=http2xconnect=1.
func TestIdleWebSocketHTTP2IsNotCut(t *testing.T) {
	if !rerunWithGODEBUG(t, "http2xconnect=1") {
		return
	}
	const limit = 200 * time.Millisecond
	l := startLimitedRelay(t, relay.LimitsConfig{StalledClient: limit, ResponseHeader: limit}, "tcp", newOrigin(t).URL)
	c, err := tls.Dial("tcp", l.addr, &tls.Config{ServerName: stallHost, RootCAs: l.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"}, {":path", "/graphql"},
		{":authority", stallHost + ":" + l.port}, {"sec-websocket-version", "13"}, {"sec-websocket-protocol", "graphql-transport-ws"},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	sr := &h2Stream{t: t, fr: fr, dec: hpack.NewDecoder(4096, nil)}
	sr.waitSettings()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if hdr := sr.headers(); hdr[":status"] != "200" {
		t.Fatalf("extended CONNECT answered %v", hdr)
	}
	br := bufio.NewReader(sr)
	echo := func(msg string) error {
		if err := fr.WriteData(1, false, maskedFrame(0x1, []byte(msg))); err != nil {
			return err
		}
		op, payload, err := readFrame(br)
		if err == nil && (op != 0x1 || string(payload) != msg) {
			err = fmt.Errorf("echo op %d %q, want %q", op, payload, msg)
		}
		return err
	}
	if err := echo(`{"type":"connection_init"}`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * limit)
	if err := echo(`{"id":"1","type":"subscribe"}`); err != nil {
		t.Errorf("after %v of silence: %v", 10*limit, err)
	}
}
