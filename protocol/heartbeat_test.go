package protocol_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// keepAlivePair opens a control stream from a to b and runs a's KeepAlive.
func keepAlivePair(t *testing.T, period time.Duration) (b protocol.Session, bctrl protocol.Stream, done <-chan error) {
	a, b := pipePair(t)
	actrl, bctrl := streamPair(t, a, b)
	errc := make(chan error, 1)
	go func() { errc <- protocol.KeepAlive(t.Context(), a, actrl, period) }()
	return b, bctrl, errc
}

// A peer that sends nothing at all is declared gone after HeartbeatMisses periods.
func TestKeepAliveSilentPeer(t *testing.T) {
	const period = 50 * time.Millisecond
	_, _, done := keepAlivePair(t, period)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "nothing received") {
			t.Errorf("KeepAlive returned %v", err)
		}
	case <-time.After(20 * period):
		t.Fatal("a silent peer was not noticed")
	}
}

// A peer whose heartbeats are stuck behind its data (a saturated uplink) is
// alive as long as the data arrives.
func TestKeepAliveDataCountsAsLife(t *testing.T) {
	const period = 50 * time.Millisecond
	b, _, done := keepAlivePair(t, period)
	ctx, cancel := context.WithTimeout(t.Context(), 15*period)
	defer cancel()
	st, err := b.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tick := time.NewTicker(period / 2)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			t.Fatalf("KeepAlive gave up on a peer that sends data: %v", err)
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := st.Write([]byte("video bytes")); err != nil {
				t.Fatal(err)
			}
		}
	}
}
