package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// reloadTimeout bounds the wait for a reload to show through the relay.
const reloadTimeout = 5 * time.Second

// newToken returns a token and its hash from `burrow token new --json`.
func newToken(t *testing.T) (token, sum string) {
	t.Helper()
	var tok struct {
		Token       string `json:"token"`
		TokenSHA256 string `json:"token_sha256"`
	}
	if err := json.Unmarshal(runBurrow(t, "token", "new", "--json"), &tok); err != nil {
		t.Fatal(err)
	}
	return tok.Token, tok.TokenSHA256
}

// hup sends SIGHUP to p and waits until its log has one more line with done
// in it than before.
func hup(t *testing.T, p *proc, log *testutil.SyncBuffer, done string) {
	t.Helper()
	before := strings.Count(log.String(), done)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(reloadTimeout)
	for strings.Count(log.String(), done) == before {
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no %q within %v of SIGHUP", p.name, done, reloadTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusOf is the status of a GET of host's /healthz through the relay.
func (e *env) statusOf(host string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/healthz", nil)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// waitStatus polls host until it answers want, and fails the test after reloadTimeout.
func (e *env) waitStatus(host string, want int) {
	e.t.Helper()
	deadline := time.Now().Add(reloadTimeout)
	for {
		got := e.statusOf(host)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s answers %d, want %d, %v after the reload", host, got, want, reloadTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SIGHUP rereads relay.yaml and agent.yaml while a download runs through the
// agent whose routes the reloads leave alone: an agent added connects at
// once, a host added to a live agent's grant is published without the agent
// reconnecting, a changed token and a removed agent end just those agents'
// sessions, an invalid file is refused with the error a start gives, and an
// agent's own reload publishes and unpublishes a route over its live
// session. The download ends intact.
func TestHotReload(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			const added, other, extra, third = "added.example.com", "other.example.com", "extra.example.com", "third.example.com"

			// The relay grants nas a second host, which its agent does not ask for yet.
			base, err := os.ReadFile(e.relayConfig)
			if err != nil {
				t.Fatal(err)
			}
			relayYAML := strings.Replace(string(base), "hosts: ["+publicHost+"]", "hosts: ["+publicHost+", "+added+"]", 1)
			writeRelay := func(agents string) {
				writeFile(t, e.relayConfig, strings.Replace(relayYAML, "log:\n", agents+"log:\n", 1))
			}
			writeRelay("")
			hup(t, e.relay, e.relayLog, "config reloaded")

			resp, h := startDownload(t, e, 1<<20)

			// Added agents: "other" (its agent runs after the reload) and "third".
			otherTok, otherSum := newToken(t)
			thirdTok, thirdSum := newToken(t)
			grant := func(name, sum string, hosts ...string) string {
				return fmt.Sprintf("  - name: %s\n    token_sha256: %q\n    hosts: [%s]\n", name, sum, strings.Join(hosts, ", "))
			}
			writeRelay(grant("other", otherSum, other) + grant("third", thirdSum, third))
			hup(t, e.relay, e.relayLog, "config reloaded")
			otherLog, thirdLog := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
			otherCfg := e.extraAgent("other", otherTok, other, extra)
			thirdCfg := e.extraAgent("third", thirdTok, third)
			otherAgent := e.start("other agent", otherLog, "agent", "--config", otherCfg)
			thirdAgent := e.start("third agent", thirdLog, "agent", "--config", thirdCfg)
			t.Cleanup(func() {
				for _, p := range []*proc{otherAgent, thirdAgent} {
					_ = p.stop(syscall.SIGKILL)
				}
				if t.Failed() {
					fmt.Fprintf(t.Output(), "--- other agent\n%s\n--- third agent\n%s\n", otherLog, thirdLog)
				}
			})
			e.waitStatus(other, http.StatusOK)
			e.waitStatus(third, http.StatusOK)
			if got := e.statusOf(extra); got != http.StatusNotFound {
				t.Errorf("%s, not granted yet, answers %d, want 404", extra, got)
			}

			// A host added to other's grant: published on its live session.
			writeRelay(grant("other", otherSum, other, extra) + grant("third", thirdSum, third))
			hup(t, e.relay, e.relayLog, "config reloaded")
			e.waitStatus(extra, http.StatusOK)
			if n := strings.Count(otherLog.String(), `msg=connected`); n != 1 {
				t.Errorf("the other agent connected %d times, want once: the host came without a reconnect", n)
			}

			// A changed token ends other's sessions; third, removed, loses its own.
			_, newSum := newToken(t)
			writeRelay(grant("other", newSum, other, extra))
			hup(t, e.relay, e.relayLog, "config reloaded")
			e.waitStatus(other, http.StatusServiceUnavailable)
			e.waitStatus(extra, http.StatusServiceUnavailable)
			e.waitStatus(third, http.StatusNotFound)
			testutil.WaitFor(t, reloadTimeout, "the other agent, its token changed, refused with the reason",
				func() bool { return strings.Contains(otherLog.String(), "invalid token") })

			// An invalid file: refused with the error a start gives; all stays.
			bad := strings.Replace(relayYAML, "state_dir:", "state_dri:", 1)
			writeFile(t, e.relayConfig, bad)
			startErr := runBurrowFails(t, "relay", "fingerprint", "--config", e.relayConfig)
			hup(t, e.relay, e.relayLog, "config reload refused")
			if !strings.Contains(e.relayLog.String(), "state_dri") || startErr == "" || !strings.Contains(startErr, "state_dri") {
				t.Errorf("the refused reload does not name the bad key as a start does (%q)", startErr)
			}
			if got := e.statusOf(publicHost); got != http.StatusOK {
				t.Errorf("%s answers %d after an invalid reload, want 200", publicHost, got)
			}

			// The agent's own reload: a route added, then removed, over its live session.
			agentYAML, err := os.ReadFile(e.agentConfig)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, e.agentConfig, string(agentYAML)+fmt.Sprintf("  - host: %s\n    service: http://%s\n    allow_unauthenticated: true\n", added, e.originAddr))
			hup(t, e.agent, e.agentLog, "routes updated")
			e.waitStatus(added, http.StatusOK)
			writeFile(t, e.agentConfig, string(agentYAML))
			hup(t, e.agent, e.agentLog, "routes updated")
			e.waitStatus(added, http.StatusServiceUnavailable)
			if n := strings.Count(e.agentLog.String(), `msg=connected`); n != 1 {
				t.Errorf("the agent connected %d times, want once: its routes changed over its live session", n)
			}

			// The download through nas, untouched by all of it, ends intact.
			if _, err := io.Copy(h, resp.Body); err != nil {
				t.Fatalf("the download broke: %v", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != prefixSHA256(drainSize) {
				t.Error("the download's bytes differ from the file's")
			}
		})
	}
}

// extraAgent writes the config of one more agent, name, serving hosts from
// the origin, and returns its path.
func (e *env) extraAgent(name, token string, hosts ...string) string {
	fp := strings.TrimSpace(string(runBurrow(e.t, "relay", "fingerprint", "--config", e.relayConfig)))
	var routes strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&routes, "  - host: %s\n    service: http://%s\n    allow_unauthenticated: true\n", h, e.originAddr)
	}
	path := filepath.Join(e.dir, name+".yaml")
	writeFile(e.t, path, fmt.Sprintf(`relay: "127.0.0.1:%d"
relay_fingerprint: %q
token: %q
admin:
  listen: ""
transport: %s
log:
  level: debug
routes:
%s`, e.tunnelPort, fp, token, e.transport, routes.String()))
	return path
}

// An access policy in agent.yaml, added by a reload, reaches the relay
// through the built binary and is enforced there: an address outside
// access.allow gets the 403 page, even on a bypassed path; an address
// inside is served.
func TestAccessPolicyByReload(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			agentYAML, err := os.ReadFile(e.agentConfig)
			if err != nil {
				t.Fatal(err)
			}
			// The root route (the first) gets the policy.
			withPolicy := strings.Replace(string(agentYAML), "    allow_unauthenticated: true\n",
				"    allow_unauthenticated: true\n    access:\n      allow: [\"127.0.0.2/32\"]\n      deny: []\n      bypass: {apikey: true, paths: [\"/healthz\"]}\n", 1)
			writeFile(t, e.agentConfig, withPolicy)
			hup(t, e.agent, e.agentLog, "routes updated")
			outside, inside := clientFrom("127.0.0.1", e.publicAddr()), clientFrom("127.0.0.3", e.publicAddr())
			allowed := clientFrom("127.0.0.2", e.publicAddr())
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			deadline := time.Now().Add(reloadTimeout)
			for {
				st, err := getStatus(ctx, outside, e.url("/files/small.bin"))
				if err == nil && st == http.StatusForbidden {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("an address outside access.allow gets %d (%v), want 403", st, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if st, err := getStatus(ctx, inside, e.url("/files/small.bin")); err != nil || st != http.StatusForbidden {
				t.Errorf("127.0.0.3: %d (%v), want 403", st, err)
			}
			if st, err := getStatus(ctx, allowed, e.url("/files/small.bin")); err != nil || st != http.StatusOK {
				t.Errorf("127.0.0.2, inside access.allow: %d (%v), want 200", st, err)
			}
			if st, err := getStatus(ctx, outside, e.url("/healthz")); err != nil || st != http.StatusForbidden {
				t.Errorf("a bypassed path from outside the allowed addresses: %d (%v), want 403 (address rules come first)", st, err)
			}
		})
	}
}
