package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// readmeBlock returns the fenced block that follows `<!-- check: name -->` in
// the README, so the walkthrough's own configs are what this test runs.
func readmeBlock(t *testing.T, readme, name string) string {
	t.Helper()
	marker := "<!-- check: " + name + " -->"
	_, after, ok := strings.Cut(readme, marker)
	if !ok {
		t.Fatalf("README.md has no %s", marker)
	}
	after = strings.TrimLeft(after, "\n")
	if !strings.HasPrefix(after, "```yaml\n") {
		t.Fatalf("README.md: %s is not followed by a ```yaml block", marker)
	}
	body, _, ok := strings.Cut(strings.TrimPrefix(after, "```yaml\n"), "\n```")
	if !ok {
		t.Fatalf("README.md: the block after %s does not end", marker)
	}
	return body + "\n"
}

// set sets a dotted key in a decoded YAML document; the key's parents must exist.
func set(t *testing.T, doc map[string]any, key string, v any) {
	t.Helper()
	parts := strings.Split(key, ".")
	m := doc
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			t.Fatalf("README config has no %s (looking for %s)", p, key)
		}
		m = next
	}
	m[parts[len(parts)-1]] = v
}

// TestReadmeWalkthrough runs a relay and an agent on loopback with the
// README's relay.yaml and agent.yaml, changed only where a test must: the
// addresses, state_dir, the token hash and the pin, the service's address,
// and no public HTTPS (its certificates would come from Let's Encrypt). The
// token reaches the agent as the walkthrough's systemd unit hands it over, a
// credential. The agent must connect, and a request reach the service.
func TestReadmeWalkthrough(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var relayDoc, agentDoc map[string]any
	if err := yaml.Unmarshal([]byte(readmeBlock(t, readme, "relay.yaml")), &relayDoc); err != nil {
		t.Fatalf("README relay.yaml: %v", err)
	}
	if err := yaml.Unmarshal([]byte(readmeBlock(t, readme, "agent.yaml")), &agentDoc); err != nil {
		t.Fatalf("README agent.yaml: %v", err)
	}

	e := &env{t: t, dir: t.TempDir(), relayLog: &testutil.SyncBuffer{}, agentLog: &testutil.SyncBuffer{}}
	// A Stash with a login set, as the walkthrough's route (no allow_unauthenticated) needs.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- origin.Serve(ctx, ln, origin.New(origin.Options{RequireLogin: true, APIKey: "k"}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("origin: %v", err)
		}
	})

	e.tunnelPort = freePort(t, true)
	e.httpPort = freePort(t, false)
	e.client = newClient(e.publicAddr())
	t.Cleanup(func() {
		e.stopAll()
		if t.Failed() {
			t.Logf("--- relay\n%s\n--- agent\n%s", e.relayLog, e.agentLog)
		}
	})
	t.Cleanup(e.client.CloseIdleConnections)

	var tok struct {
		Token       string `json:"token"`
		TokenSHA256 string `json:"token_sha256"`
	}
	if err := json.Unmarshal(runBurrow(t, "token", "new", "--json"), &tok); err != nil {
		t.Fatal(err)
	}

	set(t, relayDoc, "tunnel.listen", "127.0.0.1:"+strconv.Itoa(e.tunnelPort))
	set(t, relayDoc, "public.http", e.publicAddr())
	set(t, relayDoc, "public.https", "")
	set(t, relayDoc, "state_dir", filepath.Join(e.dir, "state"))
	set(t, relayDoc, "admin", map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(freePort(t, false))})
	agents, ok := relayDoc["agents"].([]any)
	if !ok || len(agents) != 1 {
		t.Fatalf("README relay.yaml: agents = %v, want one agent", relayDoc["agents"])
	}
	agents[0].(map[string]any)["token_sha256"] = tok.TokenSHA256
	hosts, _ := agents[0].(map[string]any)["hosts"].([]any)
	if len(hosts) == 0 {
		t.Fatal("README relay.yaml: the agent has no hosts")
	}
	publicHost, _ := hosts[0].(string)
	e.relayConfig = filepath.Join(e.dir, "relay.yaml")
	writeYAML(t, e.relayConfig, relayDoc)

	fp := strings.TrimSpace(string(runBurrow(t, "relay", "fingerprint", "--config", e.relayConfig)))
	set(t, agentDoc, "relay", "127.0.0.1:"+strconv.Itoa(e.tunnelPort))
	set(t, agentDoc, "relay_fingerprint", fp)
	set(t, agentDoc, "admin", map[string]any{"listen": "127.0.0.1:" + strconv.Itoa(freePort(t, false))})
	routes, ok := agentDoc["routes"].([]any)
	if !ok || len(routes) != 1 {
		t.Fatalf("README agent.yaml: routes = %v, want one route", agentDoc["routes"])
	}
	route := routes[0].(map[string]any)
	if route["host"] != publicHost {
		t.Fatalf("README: the agent's route is for %v, the relay grants %q", route["host"], publicHost)
	}
	route["service"] = "http://" + ln.Addr().String()
	if _, inline := agentDoc["token"]; inline {
		t.Fatal("README agent.yaml holds the token; the walkthrough keeps it in /etc/burrow/agent.token")
	}
	e.agentConfig = filepath.Join(e.dir, "agent.yaml")
	writeYAML(t, e.agentConfig, agentDoc)
	creds := t.TempDir()
	writeToken(t, filepath.Join(creds, "burrow-token"), tok.Token, 0o400)

	e.relay = e.start("relay", e.relayLog, "relay", "--config", e.relayConfig)
	cmd := exec.Command(burrowBin, "agent", "--config", e.agentConfig)
	cmd.Env = []string{"CREDENTIALS_DIRECTORY=" + creds}
	if e.agent, err = startCmd("agent", e.agentLog, cmd); err != nil {
		t.Fatal(err)
	}

	req := func(path string) (*http.Response, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+publicHost+path, nil)
		if err != nil {
			return nil, err
		}
		resp, err := e.client.Do(r)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	// waitReady asks for /healthz with the env's host, the README's.
	if publicHost != "stash.example.com" {
		t.Fatalf("README publishes %q; waitReady asks for stash.example.com", publicHost)
	}
	if d, err := e.waitReady(readyTimeout); err != nil {
		t.Fatalf("README's relay and agent not serving after %v: %v", d, err)
	}
	// A page without credentials: Stash's own login redirect, through the tunnel.
	resp, err := req("/")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/login") {
		t.Errorf("GET / answered %d (Location %q), want Stash's 302 to its login page", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func writeYAML(t *testing.T, path string, doc map[string]any) {
	t.Helper()
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
