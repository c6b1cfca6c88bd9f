// Package relaytest runs a real relay on loopback for the tests of other packages.
package relaytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/burrow-tunnel/burrow/relay"
)

// Grant lets the agent name, holding token, publish hosts.
func Grant(name, token string, hosts ...string) relay.AgentGrant {
	sum := sha256.Sum256([]byte(token))
	hash, err := relay.ParseTokenHash(hex.EncodeToString(sum[:]))
	if err != nil {
		panic(err) // a SHA-256 in hex always parses
	}
	return relay.AgentGrant{Name: name, TokenSHA256: hash, Hosts: hosts}
}

// Start runs a relay from cfg until the test ends. An empty tunnel address
// becomes 127.0.0.1:0, as does the public HTTP address when no public
// address is set, and an empty state directory a temporary one.
func Start(t testing.TB, cfg relay.Config, log *slog.Logger) *relay.Server {
	t.Helper()
	if cfg.Tunnel.Listen == "" {
		cfg.Tunnel.Listen = "127.0.0.1:0"
	}
	if cfg.Public.HTTP == "" && cfg.Public.HTTPS == "" {
		cfg.Public.HTTP = "127.0.0.1:0"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	s, err := relay.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
