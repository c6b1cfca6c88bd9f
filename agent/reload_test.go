package agent

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log a test reads while the agent writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A reload names every key that waits for a restart, the relays among them.
func TestReloadNamesRestartKeys(t *testing.T) {
	cfg := Config{Relay: "a.test:7835", Token: "tok", RelayFingerprint: "sha256:" + strings.Repeat("00", 32),
		Routes: []Route{{Host: "nas.test", Service: "tcp://127.0.0.1:1"}}}
	var log syncBuffer
	a, err := New(cfg, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, next := range []Config{
		{Relay: "b.test:7835"},
		{Relay: "a.test:7835", Relays: []string{"b.test:7835"}},
		{Relay: "a.test:7835", Token: "other"},
	} {
		if next.Token == "" {
			next.Token = cfg.Token
		}
		next.RelayFingerprint, next.Routes, next.Name = cfg.RelayFingerprint, cfg.Routes, a.cfg.Name
		before := len(log.String())
		if err := a.Reload(next); err != nil {
			t.Fatal(err)
		}
		got := log.String()[before:]
		want := "key=relay"
		if next.Token != cfg.Token {
			want = "key=token"
		}
		if !strings.Contains(got, "changes only at the next restart") || !strings.Contains(got, want) {
			t.Errorf("reload to relay %q %v, token %q logged:\n%s\nwant a warning naming %s", next.Relay, next.Relays, next.Token, got, want)
		}
	}
}
