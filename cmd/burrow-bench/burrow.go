package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The public hosts of the agent's two routes.
const (
	filesHost = "files.bench"
	wsHost    = "ws.bench"
)

// token is an agent token and the hash the relay keeps.
type token struct {
	Token  string `json:"token"`
	SHA256 string `json:"token_sha256"`
}

// newToken asks the binary for a token, as a user would.
func newToken(ctx context.Context, bin string) (token, error) {
	var t token
	out, err := exec.CommandContext(ctx, bin, "token", "new", "--json").Output()
	if err != nil {
		return t, fmt.Errorf("%s token new: %w", bin, err)
	}
	if err := json.Unmarshal(out, &t); err != nil || t.Token == "" || t.SHA256 == "" {
		return t, fmt.Errorf("%s token new --json: unexpected output %q", bin, out)
	}
	return t, nil
}

// pairSpec is one relay and its agent.
type pairSpec struct {
	name         string // directory of configs, state and logs
	transport    string // the agent's transport: quic or tcp
	relayNS      string // network namespace of the relay ("" = the host's)
	agentNS      string // network namespace of the agent
	tunnelListen string // relay tunnel.listen
	relayAddr    string // what the agent dials
	publicHTTP   string // relay public.http
	services     [][2]string
}

// burrowPair is a running relay and agent, each its own process of the real binary.
type burrowPair struct {
	spec                 pairSpec
	bin                  string
	relayConf, agentConf string
	relayLog, agentLog   string
	relay, agent         *child
	seen                 map[string]int // bytes of each log that events already read
}

// startBurrow writes relay.yaml and agent.yaml and starts both.
func (b *bench) startBurrow(ctx context.Context, spec pairSpec) (*burrowPair, error) {
	dir, err := mkdir(b.dir, spec.name)
	if err != nil {
		return nil, err
	}
	p := &burrowPair{
		spec: spec, bin: b.bin,
		relayConf: filepath.Join(dir, "relay.yaml"), agentConf: filepath.Join(dir, "agent.yaml"),
		relayLog: filepath.Join(dir, "relay.log"), agentLog: filepath.Join(dir, "agent.log"),
	}
	if err := os.WriteFile(p.relayConf, []byte(b.relayYAML(relayConf{
		tunnelListen: spec.tunnelListen, publicHTTP: spec.publicHTTP, stateDir: filepath.Join(dir, "state"),
	})), 0o600); err != nil {
		return nil, err
	}
	fp, err := b.fingerprint(ctx, p.relayConf)
	if err != nil {
		return nil, err
	}
	agentYAML := b.agentYAML(agentConf{relays: []string{spec.relayAddr}, fingerprint: fp, transport: spec.transport, services: spec.services})
	if err := os.WriteFile(p.agentConf, []byte(agentYAML), 0o600); err != nil {
		return nil, err
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// relayConf is what a relay.yaml of the bench varies.
type relayConf struct {
	tunnelListen, publicHTTP, stateDir string
	// tunnelCert and tunnelKey are a tunnel identity shared with another
	// relay; empty, the relay keeps its own in stateDir.
	tunnelCert, tunnelKey string
	// noHandshakeLimit lifts limits.handshakes_per_minute, for an agent
	// that the bench restarts many times a minute.
	noHandshakeLimit bool
}

// relayYAML is a relay.yaml granting the bench's agent its two hosts.
func (b *bench) relayYAML(c relayConf) string {
	var tunnel, limits string
	if c.tunnelCert != "" {
		tunnel = fmt.Sprintf("  cert_file: %q\n  key_file: %q\n", c.tunnelCert, c.tunnelKey)
	}
	if c.noHandshakeLimit {
		limits = "  handshakes_per_minute: 0\n"
	}
	return fmt.Sprintf(`# Written by burrow-bench.
tunnel:
  listen: %q
%spublic:
  http: %q
  redirect_http: false
state_dir: %q
admin:
  listen: "127.0.0.1:0"
limits:
  # Every visitor of the bench is one address: its thousands of streams
  # and WebSockets are the load, not an abuse.
  streams_per_client: 0
%sagents:
  - name: bench
    token_sha256: %q
    hosts: [%q, %q]
log:
  level: info
  format: text
`, c.tunnelListen, tunnel, c.publicHTTP, c.stateDir, limits, b.token.SHA256, filesHost, wsHost)
}

// fingerprint asks the binary for the tunnel fingerprint of the relay
// configured in conf, creating its identity when it has none yet.
func (b *bench) fingerprint(ctx context.Context, conf string) (string, error) {
	out, err := exec.CommandContext(ctx, b.bin, "relay", "fingerprint", "--config", conf).CombinedOutput()
	fp := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(fp, "sha256:") {
		return "", fmt.Errorf("burrow relay fingerprint: %v: %s", err, fp)
	}
	return fp, nil
}

// agentConf is what an agent.yaml of the bench varies.
type agentConf struct {
	relays      []string // what the agent dials: one relay, or a list
	fingerprint string
	transport   string
	connections int // connections_per_relay; 0 leaves the default
	services    [][2]string
}

// agentYAML is an agent.yaml with a route per service.
func (b *bench) agentYAML(c agentConf) string {
	relay := strconv.Quote(c.relays[0])
	if len(c.relays) > 1 {
		q := make([]string, len(c.relays))
		for i, r := range c.relays {
			q[i] = strconv.Quote(r)
		}
		relay = "[" + strings.Join(q, ", ") + "]"
	}
	if c.connections > 0 {
		relay += fmt.Sprintf("\nconnections_per_relay: %d", c.connections)
	}
	var routes strings.Builder
	for _, s := range c.services {
		fmt.Fprintf(&routes, "  - host: %q\n    service: %q\n", s[0], s[1])
	}
	return fmt.Sprintf(`# Written by burrow-bench.
relay: %s
relay_fingerprint: %q
token: %q
admin:
  listen: "127.0.0.1:0"
transport: %q
log:
  level: info
  format: text
routes:
%s`, relay, c.fingerprint, b.token.Token, c.transport, routes.String())
}

// start runs the relay and, once it listens, the agent.
func (p *burrowPair) start() error {
	var err error
	p.relay, err = startRelay("relay", p.relayLog, inNS(p.spec.relayNS, p.bin, "relay", "--config", p.relayConf)...)
	if err != nil {
		return err
	}
	p.agent, err = startChild("agent", p.agentLog, inNS(p.spec.agentNS, p.bin, "agent", "--config", p.agentConf)...)
	if err != nil {
		p.relay.stop()
		return err
	}
	return nil
}

// startRelay starts argv, a relay, and returns once it listens.
func startRelay(name, logPath string, argv ...string) (*child, error) {
	c, err := startChild(name, logPath, argv...)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(readFile(logPath), "relay listening"); {
		if c.exited() || time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s did not start: %s", name, c.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, nil
}

// restart gives fresh processes, for a memory baseline that earlier
// scenarios did not raise.
func (p *burrowPair) restart() error {
	p.stop()
	// Logs of the earlier processes are kept next to the new ones.
	for _, l := range []string{p.relayLog, p.agentLog} {
		_ = os.Rename(l, l+"."+time.Now().Format("150405.000"))
	}
	return p.start()
}

func (p *burrowPair) stop() {
	if p == nil {
		return
	}
	p.agent.stop()
	p.relay.stop()
}

// alive reports a relay or agent that has exited.
func (p *burrowPair) alive() error {
	for _, c := range []*child{p.relay, p.agent} {
		if c.exited() {
			return fmt.Errorf("%s exited (%v); log %s:\n%s", c.name, c.err, c.logPath, c.logTail())
		}
	}
	return nil
}

// adminAddr is the address the relay's admin listener took, from its log.
func (p *burrowPair) adminAddr() string {
	for _, line := range strings.Split(readFile(p.relayLog), "\n") {
		if !strings.Contains(line, "relay listening") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "admin="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

func (p *burrowPair) pids() []int { return []int{p.relay.pid(), p.agent.pid()} }

// events returns the log lines about sessions and problems written since
// the last call, for the report of a failure.
func (p *burrowPair) events() string {
	if p.seen == nil {
		p.seen = map[string]int{}
	}
	return logEvents(p.seen, [][2]string{{"relay", p.relayLog}, {"agent", p.agentLog}})
}

// logEvents returns the lines about sessions and problems that the logs
// (role and path) gained since seen, the bytes of each already read.
func logEvents(seen map[string]int, logs [][2]string) string {
	var out []string
	for _, l := range logs {
		role, path := l[0], l[1]
		b := readFile(path)
		if seen[path] > len(b) { // restarted: a new log
			seen[path] = 0
		}
		for _, line := range strings.Split(b[seen[path]:], "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
				strings.Contains(line, "session ended") || strings.Contains(line, "disconnected") {
				out = append(out, role+": "+line)
			}
		}
		seen[path] = len(b)
	}
	if len(out) > 8 {
		out = append(out[:4], append([]string{"…"}, out[len(out)-4:]...)...)
	}
	return strings.Join(out, "\n")
}

// inNS prefixes argv with `ip netns exec ns` when ns is set.
func inNS(ns string, argv ...string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}
