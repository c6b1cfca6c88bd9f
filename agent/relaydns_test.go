package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// A relay name that fails to resolve for a while (a resolver timing out)
// has not left DNS: the agent keeps its links, as it keeps them all when
// no name resolves.
func TestRelayLookupFailureKeepsLinks(t *testing.T) {
	cfg := Config{Relay: "a.test:1", Relays: []string{"b.test:1"}, Token: "tok", Transport: TransportTCP,
		RelayFingerprint: "sha256:0000000000000000000000000000000000000000000000000000000000000000",
		RelayRefresh:     10 * time.Millisecond, ShutdownGrace: time.Second,
		Routes: []Route{{Host: "nas.test", Service: "tcp://127.0.0.1:1"}}}
	a, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	var bFails atomic.Bool
	lookups := make(chan struct{}, 64)
	a.resolve = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "b.test" {
			select {
			case lookups <- struct{}{}:
			default:
			}
			if bFails.Load() {
				return nil, errors.New("i/o timeout")
			}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	relays := func() []string {
		var names []string
		for _, l := range a.links.Items() {
			names = append(names, l.name)
		}
		slices.Sort(names)
		return names
	}
	want := []string{"a.test:1@127.0.0.1:1", "b.test:1@127.0.0.1:1"}
	for deadline := time.Now().Add(5 * time.Second); !slices.Equal(relays(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("links %v, want %v", relays(), want)
		}
	}
	bFails.Store(true)
	for range len(lookups) {
		<-lookups
	}
	for range 3 { // three refreshes with b.test failing
		<-lookups
	}
	time.Sleep(50 * time.Millisecond)
	if got := relays(); !slices.Equal(got, want) {
		t.Errorf("links after b.test failed to resolve: %v, want %v", got, want)
	}
}
