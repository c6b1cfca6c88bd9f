package agent

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	dto "github.com/prometheus/client_model/go"
)

// burrow_agent_reconnects_total counts sessions lost, not dials that
// failed: an agent started before its relay, or retrying a relay that is
// down, has lost nothing yet.
func TestFailedDialsAreNotReconnects(t *testing.T) {
	a := testAgent(t, Config{Transport: TransportTCP})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there: every dial is refused
	l := a.newLink(target{relay: addr, addr: addr}, 0)
	// The first retry comes within about a second: this sees two dials.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	var sessions errgroup.Group
	l.run(ctx, &sessions)
	if err := sessions.Wait(); err != nil {
		t.Fatal(err)
	}
	var m dto.Metric
	if err := a.reconnects.Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetCounter().GetValue(); v != 0 {
		t.Errorf("burrow_agent_reconnects_total = %v after dials that were refused, want 0", v)
	}
	had, err := l.serve(t.Context(), &sessions)
	if had || err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("serve against a closed port: had a session %v, err %v; want none and the refusal", had, err)
	}
}
