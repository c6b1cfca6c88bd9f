package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadConfig runs the binary on broken config files: it must exit non-zero
// at once, naming the file and the key.
func TestBadConfig(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	relayBase := "tunnel:\n  listen: \"127.0.0.1:0\"\npublic:\n  http: \"127.0.0.1:0\"\nstate_dir: STATE\n"
	agentBase := "relay: \"127.0.0.1:1\"\ntoken: test-token-0123456789\n"
	cases := []struct {
		name, role, body string
		want             []string
	}{
		{"relay unknown key", "relay", relayBase + "agents:\n  - name: nas\n    token_sha256: " + hash + "\n    hosts: [a.example]\nlog:\n  levle: debug\n", []string{"log.levle", "unknown key"}},
		{"relay unknown nested key", "relay", relayBase + "agents:\n  - name: nas\n    token_sha256: " + hash + "\n    hots: [a.example]\n", []string{"agents[0].hots", "unknown key"}},
		{"relay bad log level", "relay", relayBase + "log:\n  level: loud\n", []string{"log.level", "loud"}},
		{"relay bad token hash", "relay", relayBase + "agents:\n  - name: nas\n    token_sha256: abc\n    hosts: [a.example]\n", []string{"agents[0].token_sha256"}},
		{"agent unknown key", "agent", agentBase + "routes:\n  - host: a.example\n    service: http://127.0.0.1:1\n    servce: x\n", []string{"routes[0].servce", "unknown key"}},
		{"agent bad transport", "agent", agentBase + "transport: udp\nroutes:\n  - host: a.example\n    service: http://127.0.0.1:1\n", []string{"transport", "udp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bad.yaml")
			writeFile(t, path, strings.ReplaceAll(c.body, "STATE", filepath.Join(dir, "state")))
			msg := runBurrowFails(t, c.role, "--config", path)
			for _, w := range append([]string{path}, c.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("stderr does not name %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestErrorPages checks the relay's own pages: a route whose service is down
// answers 502, and with the agent stopped every request answers 503 at once.
func TestErrorPages(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tr)

			status, body := e.mustGet("/down/", nil)
			if status != http.StatusBadGateway || !strings.Contains(string(body), "not answering") {
				t.Errorf("service down: %d %q, want 502 and the service-down page", status, body)
			}
			// The agent still serves its other routes.
			if status, _ := e.mustGet("/healthz", nil); status != http.StatusOK {
				t.Errorf("healthz after a service-down answer: %d", status)
			}

			if err := e.agent.stop(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/", "/stash/", "/down/"} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				status, body, err := e.get(ctx, path, nil)
				d := time.Since(start)
				cancel()
				if err != nil {
					t.Fatalf("GET %s with the agent stopped: %v after %v", path, err, d)
				}
				t.Logf("GET %s with the agent stopped: %d in %v", path, status, d.Round(time.Millisecond))
				if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "not connected") {
					t.Errorf("GET %s: %d %q, want 503 and the not-connected page", path, status, body)
				}
				if d > 2*time.Second {
					t.Errorf("GET %s took %v, want < 2s", path, d)
				}
			}
		})
	}
}
