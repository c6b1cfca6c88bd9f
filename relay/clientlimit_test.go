package relay_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/relay"
)

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (all of 127.0.0.0/8 is this machine), one connection per request.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// One address gets at most limits.streams_per_client requests and WebSockets
// in flight; more get the 429 page at once. Another address is not affected,
// and a finished request gives its slot back.
func TestStreamsPerClient(t *testing.T) {
	const limit = 3
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			hold := make(chan struct{})
			var holdOnce sync.Once
			release := func() { holdOnce.Do(func() { close(hold) }) }
			defer release()
			entered := make(chan struct{}, limit)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/slow":
					w.WriteHeader(http.StatusOK)
					w.(http.Flusher).Flush()
					entered <- struct{}{}
					<-hold
				case "/ws":
					c, err := websocket.Accept(w, r, nil)
					if err != nil {
						return
					}
					defer c.CloseNow()
					entered <- struct{}{}
					_, _, _ = c.Read(r.Context()) // until the client goes
				default:
					io.WriteString(w, "ok")
				}
			}))
			defer origin.Close()
			defer release() // the origin's Close waits for its handlers
			h := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: "127.0.0.1:0", http: "127.0.0.1:0",
				state: t.TempDir(), token: "test-token", limits: relay.LimitsConfig{StreamsPerClient: limit}})
			startAgent(t, h, tr, []agent.Route{{Host: "stash.example.com", Service: origin.URL}})

			do := func(c *http.Client, path string) (*http.Response, error) {
				req, _ := http.NewRequest("GET", h.public+path, nil)
				req.Host = "stash.example.com"
				return c.Do(req)
			}
			attacker, neighbour := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
			// One WebSocket and limit-1 slow answers fill the address's slots.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, "ws://"+h.relay.HTTPAddr().String()+"/ws",
				&websocket.DialOptions{Host: "stash.example.com", HTTPClient: attacker})
			if err != nil {
				t.Fatalf("websocket: %v", err)
			}
			defer ws.CloseNow()
			<-entered
			var open []*http.Response
			for range limit - 1 {
				resp, err := do(attacker, "/slow")
				if err != nil {
					t.Fatal(err)
				}
				open = append(open, resp)
				<-entered
			}
			resp, err := do(attacker, "/fast")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "limits.streams_per_client") {
				t.Fatalf("request over the limit: %d %q, want 429 and the page", resp.StatusCode, body)
			}
			if resp, err := do(neighbour, "/fast"); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("another address: %v %v, want 200", resp, err)
			} else {
				resp.Body.Close()
			}
			// The WebSocket's end frees a slot.
			ws.Close(websocket.StatusNormalClosure, "")
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, err := do(attacker, "/fast")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %d after the WebSocket closed", resp.StatusCode)
				}
				time.Sleep(20 * time.Millisecond)
			}
			release()
			for _, r := range open {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		})
	}
}
