package accesstest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"))
}

// setup describes one test's relay, agent and origin.
type setup struct {
	transport string        // quic or tcp; "" is tcp
	listen    string        // the relay's HTTPS address; "" is 127.0.0.1:0
	host      string        // the route's host; "" is localhost
	extra     []agent.Route // more routes of the same agent, their hosts granted too
	trusted   []netip.Prefix
	origin    origin.Options
	// access makes the route's policy once the relay's public base URL is known.
	access func(base string) *agent.Access
}

type env struct {
	base     string // https://host:port/stash
	client   *http.Client
	site     *origin.Server
	rs       *relay.Server
	stateDir string
}

func start(t *testing.T, s setup) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.origin.Log = log.With("role", "origin")
	site := origin.New(s.origin)
	siteDone := make(chan error, 1)
	go func() { siteDone <- origin.Serve(ctx, ln, site) }()

	cert, _ := testutil.SelfSigned("localhost")
	certFile, keyFile := testutil.WritePEM(t, cert)
	if s.listen == "" {
		s.listen = "127.0.0.1:0"
	}
	if s.host == "" {
		s.host = "localhost"
	}
	hosts := []string{s.host}
	for _, r := range s.extra {
		hosts = append(hosts, r.Host)
	}
	stateDir := t.TempDir()
	rs := relaytest.Start(t, relay.Config{
		Public:         relay.PublicConfig{HTTPS: s.listen},
		TLS:            relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
		TrustedProxies: s.trusted,
		StateDir:       stateDir,
		Agents:         []relay.AgentGrant{relaytest.Grant("nas", "tok", hosts...)},
	}, log.With("role", "relay"))
	base := fmt.Sprintf("https://%s:%d/stash", s.host, rs.HTTPSAddr().(*net.TCPAddr).Port)
	tr := s.transport
	if tr == "" {
		tr = agent.TransportTCP
	}
	route := agent.Route{Host: s.host, Prefix: "/stash", Service: "http://" + ln.Addr().String(), AllowUnauthenticated: true}
	if s.access != nil {
		route.Access = s.access(base)
	}
	ag, err := agent.New(agent.Config{
		Relay: rs.TunnelAddr().String(), RelayFingerprint: rs.TunnelFingerprint(), Token: "tok", Transport: tr,
		Routes: append([]agent.Route{route}, s.extra...),
	}, log.With("role", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan *protocol.Welcome, 1)
	ag.OnWelcome = func(w *protocol.Welcome) {
		select {
		case up <- w:
		default:
		}
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-agentDone
		<-siteDone
	})
	select {
	case w := <-up:
		if len(w.Refused) > 0 {
			t.Fatalf("relay refused the route: %+v", w.Refused)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	jar, _ := cookiejar.New(nil)
	dialer := &net.Dialer{}
	hostPort := rs.HTTPSAddr().String()
	client := &http.Client{
		Jar: jar,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			// Every name is the relay's (localhost, IPv4 or IPv6 alike, and
			// the routes' hosts); addresses are dialed as they are.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if host, _, err := net.SplitHostPort(addr); err == nil {
					if _, err := netip.ParseAddr(host); err != nil {
						addr = hostPort
					}
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)
	return &env{base: base, client: client, site: site, rs: rs, stateDir: stateDir}
}

// do sends a request and returns the answer with its body read.
func (e *env) do(t *testing.T, method, url string, hdr http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

func (e *env) get(t *testing.T, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	return e.do(t, http.MethodGet, url, hdr, nil)
}

// page is the header set of a browser asking for a page.
var page = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}
