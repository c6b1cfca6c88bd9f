package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/relay"
)

// dryRunErr has an agent ask the relay for its routes, and returns why it could not.
func dryRunErr(t *testing.T, cfg agent.Config) error {
	t.Helper()
	cfg.Token = "test-token"
	cfg.Routes = []agent.Route{{Host: "stash.example.test", Service: "tcp://127.0.0.1:1"}}
	a, err := agent.New(cfg, testLogger(t, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.DryRun(ctx)
	if err == nil {
		t.Fatal("the agent connected to a relay it cannot verify")
	}
	return err
}

// TestAgentSelfSignedRelayWithoutPin: an agent without relay_fingerprint
// (the README's default) meets a relay's self-signed identity and is told
// to pin it, with the fingerprint the relay prints.
func TestAgentSelfSignedRelayWithoutPin(t *testing.T) {
	s := relaytest.Start(t, relay.Config{Agents: []relay.AgentGrant{relaytest.Grant("nas", "test-token", "stash.example.test")}}, testLogger(t, "relay"))
	addr := s.TunnelAddr().String()
	fp := s.TunnelFingerprint()
	for _, tr := range []string{"quic", "tcp", "auto"} {
		t.Run(tr, func(t *testing.T) {
			err := dryRunErr(t, agent.Config{Relay: addr, ServerName: "relay.example.test", Transport: tr})
			want := fmt.Sprintf("dial relay %s: the relay presents a self-signed certificate; pin it with relay_fingerprint: %s "+
				"(run `burrow relay fingerprint` on the relay to check that it prints the same); "+
				"or, if the relay has tunnel.hostname: relay.example.test, it has no certificate for that name yet "+
				"and serves its own meanwhile: the relay's log says why", addr, fp)
			if err.Error() != want {
				t.Errorf("error:\n%s\nwant:\n%s", err, want)
			}
		})
	}
	t.Run("by address", func(t *testing.T) {
		err := dryRunErr(t, agent.Config{Relay: addr, Transport: "tcp"})
		want := fmt.Sprintf("dial relay %s: the relay presents a self-signed certificate; pin it with relay_fingerprint: %s "+
			"(run `burrow relay fingerprint` on the relay to check that it prints the same)", addr, fp)
		if err.Error() != want {
			t.Errorf("error:\n%s\nwant:\n%s", err, want)
		}
	})
	t.Run("wrong pin", func(t *testing.T) {
		pin := "sha256:" + strings.Repeat("ab", 32)
		err := dryRunErr(t, agent.Config{Relay: addr, RelayFingerprint: pin, Transport: "quic"})
		want := fmt.Sprintf("dial relay %s: the relay presents the certificate %s, not the pinned relay_fingerprint %s: "+
			"run `burrow relay fingerprint` on the relay; if it prints %s, the relay's identity was made anew "+
			"(a new state_dir): put it in relay_fingerprint; if not, something other than your relay answers at %s",
			addr, fp, pin, fp, addr)
		if err.Error() != want {
			t.Errorf("error:\n%s\nwant:\n%s", err, want)
		}
	})
}

// TestTunnelHostnameBeforeItsCertificate: a relay with tunnel.hostname whose
// certificate cannot be obtained (the CA cannot reach its ports) says why in
// one line, serves its self-signed identity meanwhile, and an agent that
// verifies by CA is told what is going on instead of "tls: internal error".
func TestTunnelHostnameBeforeItsCertificate(t *testing.T) {
	p := newPebble(t, time.Hour)
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(logs, t.Output()), &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := relay.New(relay.Config{
		Tunnel:   relay.TunnelConfig{Listen: "127.0.0.1:0", Hostname: "relay.example.test"},
		Public:   relay.PublicConfig{HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0"},
		TLS:      relay.TLSConfig{ACME: relay.ACMEConfig{CA: p.URL, CARoot: p.WFERoot}},
		StateDir: t.TempDir(),
		Agents:   []relay.AgentGrant{relaytest.Grant("nas", "test-token", "stash.example.test")},
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	// The CA validates against a port where nothing listens, as when a
	// firewall drops port 80 and 443.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p.start(closed, closed)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const summary = "no certificate for relay.example.test yet: the CA could not connect to this server for relay.example.test (the CA says: "
	testutil.WaitFor(t, 30*time.Second, "the relay's line on the failed certificate", func() bool {
		return strings.Contains(logs.String(), summary)
	})
	line := lineWith(logs.String(), summary)
	if !strings.Contains(line, ": check that relay.example.test's DNS points here and that ports 80/tcp (HTTP-01) and 443/tcp (TLS-ALPN-01) are open to the internet; the relay tries again by itself (the CA's full answer is logged at log.level: debug)") {
		t.Errorf("summary line: %s", line)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n > 0 {
		t.Errorf("%d certmagic error lines beside the summary:\n%s", n, logs)
	}

	addr := s.TunnelAddr().String()
	err = dryRunErr(t, agent.Config{Relay: addr, ServerName: "relay.example.test", CAFile: p.RootFile(), Transport: "quic"})
	want := fmt.Sprintf("dial relay %s: the relay presents a self-signed certificate; pin it with relay_fingerprint: %s "+
		"(run `burrow relay fingerprint` on the relay to check that it prints the same); "+
		"or, if the relay has tunnel.hostname: relay.example.test, it has no certificate for that name yet "+
		"and serves its own meanwhile: the relay's log says why", addr, s.TunnelFingerprint())
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	const why = "an agent asked for tunnel.hostname relay.example.test, which has no certificate yet: serving the self-signed tunnel identity meanwhile"
	line = lineWith(logs.String(), why)
	if line == "" || !strings.Contains(line, "relay_fingerprint "+s.TunnelFingerprint()) ||
		!strings.Contains(line, `why="the CA could not connect to this server for relay.example.test`) {
		t.Errorf("the relay did not say why the agent got its identity:\n%s", logs)
	}

	// An agent that pins the identity connects meanwhile.
	err = dryRunErrOK(t, agent.Config{Relay: addr, ServerName: "relay.example.test", RelayFingerprint: s.TunnelFingerprint(), Transport: "tcp"})
	if err != nil {
		t.Errorf("an agent pinning the identity: %v", err)
	}
}

func dryRunErrOK(t *testing.T, cfg agent.Config) error {
	cfg.Token = "test-token"
	cfg.Routes = []agent.Route{{Host: "stash.example.test", Service: "tcp://127.0.0.1:1"}}
	a, err := agent.New(cfg, testLogger(t, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.DryRun(ctx)
	return err
}

// lineWith returns the first line of logs that holds s, or "".
func lineWith(logs, s string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
