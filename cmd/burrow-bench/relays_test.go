package main

import (
	"slices"
	"strings"
	"testing"
)

// TestRelayYAML checks the one-relay config the loopback paths have always
// used, and what scenario 10 adds to it: a shared tunnel identity inside
// tunnel:, no handshake limit inside limits:.
func TestRelayYAML(t *testing.T) {
	b := &bench{token: token{Token: "tok", SHA256: "abc"}}
	got := b.relayYAML(relayConf{tunnelListen: "127.0.0.1:1", publicHTTP: "127.0.0.1:2", stateDir: "/s"})
	want := `# Written by burrow-bench.
tunnel:
  listen: "127.0.0.1:1"
public:
  http: "127.0.0.1:2"
  redirect_http: false
state_dir: "/s"
admin:
  listen: "127.0.0.1:0"
limits:
  # Every visitor of the bench is one address: its thousands of streams
  # and WebSockets are the load, not an abuse.
  streams_per_client: 0
agents:
  - name: bench
    token_sha256: "abc"
    hosts: ["files.bench", "ws.bench"]
log:
  level: info
  format: text
`
	if got != want {
		t.Errorf("one relay:\n%s\nwant:\n%s", got, want)
	}

	got = b.relayYAML(relayConf{tunnelListen: "127.0.0.1:1", publicHTTP: "127.0.0.1:2", stateDir: "/s",
		tunnelCert: "/a/tunnel.crt", tunnelKey: "/a/tunnel.key", noHandshakeLimit: true})
	for _, s := range []string{
		"tunnel:\n  listen: \"127.0.0.1:1\"\n  cert_file: \"/a/tunnel.crt\"\n  key_file: \"/a/tunnel.key\"\npublic:\n",
		"  streams_per_client: 0\n  handshakes_per_minute: 0\nagents:\n",
	} {
		if !strings.Contains(got, s) {
			t.Errorf("shared identity: no %q in\n%s", s, got)
		}
	}
}

func TestAgentYAML(t *testing.T) {
	b := &bench{token: token{Token: "tok", SHA256: "abc"}}
	svc := [][2]string{{filesHost, "http://127.0.0.1:3"}}
	one := b.agentYAML(agentConf{relays: []string{"127.0.0.1:1"}, fingerprint: "sha256:f", transport: "quic", services: svc})
	if !strings.Contains(one, "\nrelay: \"127.0.0.1:1\"\nrelay_fingerprint: \"sha256:f\"\n") || strings.Contains(one, "connections_per_relay") {
		t.Errorf("one relay:\n%s", one)
	}
	two := b.agentYAML(agentConf{relays: []string{"127.0.0.1:1", "127.0.0.1:2"}, fingerprint: "sha256:f", transport: "tcp",
		connections: 4, services: svc})
	if !strings.Contains(two, "\nrelay: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nconnections_per_relay: 4\nrelay_fingerprint:") {
		t.Errorf("two relays:\n%s", two)
	}
	if !strings.Contains(two, "routes:\n  - host: \"files.bench\"\n    service: \"http://127.0.0.1:3\"\n") {
		t.Errorf("routes:\n%s", two)
	}
}

func TestRelaysPlan(t *testing.T) {
	if got := scenarioList(); got != "1-10" {
		t.Errorf("scenarioList() = %q", got)
	}
	for _, quick := range []bool{false, true} {
		p, err := newPlan(options{quick: quick, only: "10"})
		if err != nil {
			t.Fatal(err)
		}
		var sessions []int
		for _, s := range p.relaysSetups() {
			sessions = append(sessions, s.sessions())
		}
		want := []int{1, 2, 4, 6, 8}
		if quick {
			want = []int{1, 2, 8}
		}
		if !slices.Equal(sessions, want) || !p.scenarios[10] || p.scenarios[1] {
			t.Errorf("quick %v: sessions %v, scenarios %v", quick, sessions, p.scenarios)
		}
	}
	if _, err := newPlan(options{only: "11"}); err == nil || !strings.Contains(err.Error(), "1-10") {
		t.Errorf("-only 11: %v", err)
	}
}
