package relay_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/relay"
)

// A relay over limits.memory_mib answers new requests with the 503 page
// that says so, at once.
func TestOverMemoryBudget(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer origin.Close()
	h := startRelayWith(t, relayOpts{hosts: []string{"stash.example.com"}, tunnel: "127.0.0.1:0", http: "127.0.0.1:0",
		state: t.TempDir(), token: "test-token", limits: relay.LimitsConfig{MemoryMiB: 1}})
	startAgent(t, h, "tcp", []agent.Route{{Host: "stash.example.com", Service: origin.URL}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("GET", h.public+"/", nil)
		req.Host = "stash.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "limits.memory_mib") {
			if resp.Header.Get("Retry-After") == "" {
				t.Error("no Retry-After on the over-budget page")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a relay with a 1 MiB budget still answers %d: %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
