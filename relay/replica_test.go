package relay_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/protocol"
)

// runReplica runs an agent for h's grant until the returned stop is called
// (or the test ends), and waits until it is connected.
func runReplica(t *testing.T, h *harness, transport, name, service string) (stop func()) {
	t.Helper()
	connected := make(chan struct{}, 1)
	a, err := agent.New(agent.Config{
		Relay:            h.relay.TunnelAddr().String(),
		RelayFingerprint: h.relay.TunnelFingerprint(),
		Token:            h.token,
		Transport:        transport,
		Routes:           []agent.Route{{Host: "stash.example.com", Service: service}},
	}, testLogger(t, name))
	if err != nil {
		t.Fatal(err)
	}
	a.OnWelcome = func(w *protocol.Welcome) {
		if len(w.Refused) > 0 {
			t.Errorf("%s: routes refused: %+v", name, w.Refused)
		}
		select {
		case connected <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not connect", name)
	}
	return stop
}

// Two agents with one grant serve one host together: requests are spread
// over both, and while either is up the site never answers 503, whichever
// of them stops.
func TestReplicas(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			var hits [2]atomic.Int64
			origins := make([]string, 2)
			for i := range origins {
				o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					hits[i].Add(1)
					io.WriteString(w, "replica "+string(rune('a'+i)))
				}))
				t.Cleanup(o.Close)
				origins[i] = o.URL
			}
			h := startRelay(t, []string{"stash.example.com"})
			stopA := runReplica(t, h, tr, "agent-a", origins[0])
			stopB := runReplica(t, h, tr, "agent-b", origins[1])

			// Requests run without pause while the agents come and go.
			var failures []string
			var mu sync.Mutex
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					client := &http.Client{Timeout: 10 * time.Second}
					defer client.CloseIdleConnections()
					for ctx.Err() == nil {
						req, _ := http.NewRequest("GET", h.public+"/x", nil)
						req.Host = "stash.example.com"
						resp, err := client.Do(req)
						if err != nil {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "replica") {
							mu.Lock()
							failures = append(failures, resp.Status+": "+firstLine(string(body)))
							mu.Unlock()
						}
					}
				})
			}
			pause := func() { time.Sleep(300 * time.Millisecond) }
			pause()
			if hits[0].Load() == 0 || hits[1].Load() == 0 {
				t.Errorf("requests were not spread: %d and %d", hits[0].Load(), hits[1].Load())
			}
			stopA()
			pause()
			stopA = runReplica(t, h, tr, "agent-a2", origins[0])
			pause()
			stopB()
			pause()
			before := hits[0].Load()
			pause()
			cancel()
			wg.Wait()
			stopA()
			if hits[0].Load() == before {
				t.Error("the remaining replica answered nothing")
			}
			if len(failures) > 0 {
				t.Errorf("%d requests failed while a replica was up, first: %s", len(failures), failures[0])
			}
			t.Logf("answers: a %d, b %d", hits[0].Load(), hits[1].Load())
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
