package relay_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(relayChildEnv); spec != "" {
		os.Exit(runRelayChild(spec)) // this binary is one of TestSharedCertificatesThroughRedis's relays
	}
	goleak.VerifyTestMain(m,
		// certmagic keeps one rate limiter per CA and account for the process's
		// life (a global map; nothing stops them).
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		// certmagic's file-lock keeper polls every 5 s and exits on its own at
		// the first poll after the lock is released, which can be after the tests.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		// pebble's VA (the test CA) has a task loop with no way to stop it.
		goleak.IgnoreTopFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
	)
}

type harness struct {
	relay   *relay.Server
	public  string
	token   string
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func startRelay(t testing.TB, hosts []string) *harness {
	t.Helper()
	return startRelayWith(t, relayOpts{hosts: hosts, tunnel: "127.0.0.1:0", http: "127.0.0.1:0", state: t.TempDir(), token: "test-token"})
}

type relayOpts struct {
	hosts                []string
	tunnel, http, state  string
	token, acceptedToken string
	limits               relay.LimitsConfig
}

func startRelayWith(t testing.TB, o relayOpts) *harness {
	t.Helper()
	if o.acceptedToken == "" {
		o.acceptedToken = o.token
	}
	s, err := relay.New(relay.Config{
		Tunnel:   relay.TunnelConfig{Listen: o.tunnel},
		Public:   relay.PublicConfig{HTTP: o.http},
		StateDir: o.state,
		Agents:   []relay.AgentGrant{relaytest.Grant("nas", o.acceptedToken, o.hosts...)},
		Limits:   o.limits,
	}, testLogger(t, "relay"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{relay: s, public: "http://" + s.HTTPAddr().String(), token: o.token, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- s.Run(ctx) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t testing.TB) {
	if h.stopped {
		return
	}
	h.stopped = true
	h.cancel()
	if err := <-h.done; err != nil {
		t.Errorf("relay Run: %v", err)
	}
}

func testLogger(t testing.TB, role string) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", role)
}

// startAgent runs an agent and waits until it is connected.
func startAgent(t testing.TB, h *harness, transport string, routes []agent.Route) {
	t.Helper()
	connected := make(chan struct{}, 1)
	a, err := agent.New(agent.Config{
		Relay:            h.relay.TunnelAddr().String(),
		RelayFingerprint: h.relay.TunnelFingerprint(),
		Token:            h.token,
		Transport:        transport,
		Routes:           routes,
	}, testLogger(t, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	a.OnWelcome = func(*protocol.Welcome) {
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
}

func get(t *testing.T, url, host string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestProxyBothTransports(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hdr := map[string]string{"host": r.Host, "path": r.URL.Path}
				for _, k := range []string{"X-Real-Ip", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix"} {
					hdr[k] = r.Header.Get(k)
				}
				json.NewEncoder(w).Encode(hdr)
			}))
			defer origin.Close()
			h := startRelay(t, []string{"stash.example.com"})
			startAgent(t, h, tr, []agent.Route{
				{Host: "stash.example.com", Service: origin.URL},
				{Host: "stash.example.com", Prefix: "/stash", Service: origin.URL},
			})
			resp, body := get(t, h.public+"/scene/1", "stash.example.com")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var got map[string]string
			json.Unmarshal([]byte(body), &got)
			_, port, _ := net.SplitHostPort(h.relay.HTTPAddr().String())
			want := map[string]string{"host": "stash.example.com", "path": "/scene/1", "X-Real-Ip": "127.0.0.1", "X-Forwarded-For": "127.0.0.1",
				"X-Forwarded-Proto": "http", "X-Forwarded-Host": "stash.example.com", "X-Forwarded-Port": port, "X-Forwarded-Prefix": ""}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			_, body = get(t, h.public+"/stash/scene/1", "stash.example.com")
			json.Unmarshal([]byte(body), &got)
			if got["path"] != "/scene/1" || got["X-Forwarded-Prefix"] != "/stash" {
				t.Errorf("prefix route: %v", got)
			}
			resp, body = get(t, h.public+"/", "other.example.com")
			if resp.StatusCode != 404 || !strings.Contains(body, "other.example.com") {
				t.Errorf("unknown host: %d %s", resp.StatusCode, body)
			}
		})
	}
}
