package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
)

// runAgent starts an agent without waiting for it; its log goes to the test and to the returned buffer.
func runAgent(t *testing.T, relayAddr, fingerprint, token, transport string, routes []agent.Route) (*testutil.SyncBuffer, chan *protocol.Welcome) {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(multiWriter{t.Output(), buf}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("role", "agent")
	a, err := agent.New(agent.Config{Relay: relayAddr, RelayFingerprint: fingerprint, Token: token, Transport: transport, Routes: routes}, log)
	if err != nil {
		t.Fatal(err)
	}
	welcomes := make(chan *protocol.Welcome, 16)
	a.OnWelcome = func(w *protocol.Welcome) { welcomes <- w }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return buf, welcomes
}

type multiWriter []interface{ Write([]byte) (int, error) }

func (m multiWriter) Write(p []byte) (int, error) {
	for _, w := range m {
		w.Write(p)
	}
	return len(p), nil
}

func status(t *testing.T, url, host string) (int, string) {
	t.Helper()
	resp, body := get(t, url, host)
	return resp.StatusCode, body
}

func TestErrorPages(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			h := startRelay(t, []string{"stash.example.com", "down.example.com", "*.home.example.com"})

			// Granted host, no agent connected: 503 at once with a page that says so.
			start := time.Now()
			code, body := status(t, h.public+"/", "stash.example.com")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "home agent") || !strings.Contains(body, "not connected") {
				t.Errorf("offline agent: %d %q", code, body)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("offline agent answer took %v", d)
			}
			code, _ = status(t, h.public+"/", "x.home.example.com")
			if code != http.StatusServiceUnavailable {
				t.Errorf("wildcard host, offline agent: %d", code)
			}

			// A port nothing listens on: the service is down at home.
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			dead := "http://" + ln.Addr().String()
			ln.Close()
			startAgent(t, h, tr, []agent.Route{
				{Host: "down.example.com", Service: dead},
			})
			code, body = status(t, h.public+"/scene/1", "down.example.com")
			if code != http.StatusBadGateway || !strings.Contains(body, "not answering") {
				t.Errorf("service down: %d %q", code, body)
			}
			code, body = status(t, h.public+"/", "nobody.example.org")
			if code != http.StatusNotFound || !strings.Contains(body, "nobody.example.org") {
				t.Errorf("unknown host: %d %q", code, body)
			}
		})
	}
}

// A request with a body (Stash's GraphQL is all POSTs) to a service that is
// down gets the service-down page too. The agent answers that status and
// closes the stream while the relay is still sending the body, and the
// failed write must not hide the status behind a tunnel error.
func TestServiceDownPageForRequestWithBody(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			h := startRelay(t, []string{"down.example.com"})
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			dead := "http://" + ln.Addr().String()
			ln.Close()
			startAgent(t, h, tr, []agent.Route{{Host: "down.example.com", Service: dead, AllowUnauthenticated: true}})
			for i := range 30 {
				req, _ := http.NewRequest(http.MethodPost, h.public+"/graphql", strings.NewReader(strings.Repeat("x", 100_000)))
				req.Host = "down.example.com"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "not answering") {
					t.Fatalf("POST %d: %d %.200q, want 502 and the service-down page", i, resp.StatusCode, body)
				}
			}
		})
	}
}

func TestHostNotGranted(t *testing.T) {
	h := startRelay(t, []string{"stash.example.com"})
	logs, welcomes := runAgent(t, h.relay.TunnelAddr().String(), h.relay.TunnelFingerprint(), h.token, "tcp", []agent.Route{
		{Host: "stash.example.com", Service: "http://127.0.0.1:9"},
		{Host: "evil.example.org", Service: "http://127.0.0.1:9"},
	})
	var w *protocol.Welcome
	select {
	case w = <-welcomes:
	case <-time.After(10 * time.Second):
		t.Fatal("no welcome")
	}
	if len(w.Accepted) != 1 || w.Accepted[0].Host != "stash.example.com" {
		t.Errorf("accepted %+v", w.Accepted)
	}
	if len(w.Refused) != 1 || w.Refused[0].Host != "evil.example.org" || !strings.Contains(w.Refused[0].Reason, "not granted") {
		t.Errorf("refused %+v", w.Refused)
	}
	testutil.WaitFor(t, 5*time.Second, "refusal in the agent's log", func() bool {
		return strings.Contains(logs.String(), "relay refused route") && strings.Contains(logs.String(), "evil.example.org")
	})
	if code, _ := status(t, h.public+"/", "evil.example.org"); code != http.StatusNotFound {
		t.Errorf("refused host answered %d", code)
	}
}

// TestBadTokenThenFixedRelay: the agent logs the relay's reason, keeps retrying,
// and connects once the relay is restarted with the right token hash.
func TestBadTokenThenFixedRelay(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			state := t.TempDir()
			h := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: "127.0.0.1:0", http: "127.0.0.1:0", state: state, token: "right", acceptedToken: "something-else"})
			tunnel := h.relay.TunnelAddr().String()
			logs, welcomes := runAgent(t, tunnel, h.relay.TunnelFingerprint(), "right", tr, []agent.Route{{Host: "stash.example.com", Service: "http://127.0.0.1:9"}})
			testutil.WaitFor(t, 10*time.Second, "invalid token in the agent's log", func() bool {
				return strings.Contains(logs.String(), "relay refused the agent") && strings.Contains(logs.String(), protocol.RejectBadToken)
			})
			h.stop(t)
			h2 := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: tunnel, http: "127.0.0.1:0", state: state, token: "right"})
			_ = h2
			select {
			case <-welcomes:
			case <-time.After(15 * time.Second):
				t.Fatalf("agent did not connect after the relay was fixed; log:\n%s", logs)
			}
		})
	}
}

// TestRelayRestart: a relay restarted under a connected agent serves again within 5 s of its return.
func TestRelayRestart(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			origin := newEcho(t)
			state := t.TempDir()
			h := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: "127.0.0.1:0", http: "127.0.0.1:0", state: state, token: "tok"})
			tunnel := h.relay.TunnelAddr().String()
			_, welcomes := runAgent(t, tunnel, h.relay.TunnelFingerprint(), "tok", tr, []agent.Route{{Host: "stash.example.com", Service: origin}})
			<-welcomes
			if code, _ := status(t, h.public+"/", "stash.example.com"); code != 200 {
				t.Fatalf("before restart: %d", code)
			}
			h.stop(t)
			time.Sleep(500 * time.Millisecond)
			h2 := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: tunnel, http: "127.0.0.1:0", state: state, token: "tok"})
			back := time.Now()
			testutil.WaitFor(t, 5*time.Second, "service through the restarted relay", func() bool {
				code, _ := status(t, h2.public+"/", "stash.example.com")
				return code == 200
			})
			t.Logf("served again %v after the relay's return", time.Since(back).Round(time.Millisecond))
		})
	}
}

func newEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
