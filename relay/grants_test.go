package relay_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/relay"
)

func runRelay(t *testing.T, cfg relay.Config) *relay.Server {
	t.Helper()
	return relaytest.Start(t, cfg, testLogger(t, "relay"))
}

// A wildcard grant does not let its agent take a name granted by name to another agent.
func TestExactGrantBeatsWildcard(t *testing.T) {
	s := runRelay(t, relay.Config{Agents: []relay.AgentGrant{
		relaytest.Grant("wild", "w", "*.example.com"),
		relaytest.Grant("nas", "n", "stash.example.com"),
	}})
	_, welcomes := runAgent(t, s.TunnelAddr().String(), s.TunnelFingerprint(), "w", "tcp", []agent.Route{
		{Host: "stash.example.com", Service: newEcho(t)},
		{Host: "photos.example.com", Service: newEcho(t)},
	})
	select {
	case w := <-welcomes:
		if len(w.Accepted) != 1 || w.Accepted[0].Host != "photos.example.com" {
			t.Errorf("accepted %+v", w.Accepted)
		}
		if len(w.Refused) != 1 || !strings.Contains(w.Refused[0].Reason, `agent "nas"`) {
			t.Errorf("refused %+v", w.Refused)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no welcome")
	}
}

// Behind a trusted proxy, X-Real-IP is the address that proxy saw, not what the client wrote.
func TestTrustedProxyRealIP(t *testing.T) {
	var got http.Header
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer origin.Close()
	s := runRelay(t, relay.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Agents:         []relay.AgentGrant{relaytest.Grant("nas", "n", "stash.example.com")},
	})
	_, welcomes := runAgent(t, s.TunnelAddr().String(), s.TunnelFingerprint(), "n", "quic", []agent.Route{{Host: "stash.example.com", Service: origin.URL}})
	<-welcomes
	req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr().String()+"/", nil)
	req.Host = "stash.example.com"
	req.Header.Set("X-Forwarded-For", "10.0.0.1, 203.0.113.9") // spoofed entry, then what the proxy saw
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ip := got.Get("X-Real-Ip"); ip != "203.0.113.9" {
		t.Errorf("X-Real-IP %q, want the address the trusted proxy appended", ip)
	}
	if xff := got.Get("X-Forwarded-For"); xff != "10.0.0.1, 203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
}

// An h2c upgrade would carry requests without the relay's forwarded headers.
func TestH2CUpgradeRefused(t *testing.T) {
	h := startRelay(t, []string{"stash.example.com"})
	startAgent(t, h, "tcp", []agent.Route{{Host: "stash.example.com", Service: newEcho(t)}})
	req, _ := http.NewRequest("GET", h.public+"/", nil)
	req.Host = "stash.example.com"
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("h2c upgrade answered %d", resp.StatusCode)
	}
}
