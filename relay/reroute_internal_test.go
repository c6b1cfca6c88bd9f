package relay

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/memsession"
)

// A request whose session ended goes to a replica of its own route, never
// to a shorter prefix or another agent's route.
func TestRerouteOnlyToReplicas(t *testing.T) {
	s := &Server{reg: newRegistry(), metrics: newMetrics()}
	s.conf.Store(&s.cfg)
	deadA, deadB := memsession.Pair()
	deadA.Close()
	deadB.Close()
	liveA, liveB := memsession.Pair()
	defer liveA.Close()
	defer liveB.Close()
	gone, _, _, _ := s.reg.add("x", deadA, new(atomic.Int64), "example.com", "/stash", nil)
	s.reg.add("y", liveA, new(atomic.Int64), "example.com", "", nil)
	s.reg.remove([]*route{gone}) // its session ended: unpublished
	ctx := context.WithValue(context.Background(), routeKey, gone)
	if host, ok := s.reroute(ctx); ok {
		t.Fatalf("rerouted to %s: another agent's shorter prefix", host)
	}
	replica, _, _, _ := s.reg.add("x", liveB, new(atomic.Int64), "example.com", "/stash", nil)
	if host, ok := s.reroute(ctx); !ok || host != routeHost(replica) {
		t.Fatalf("reroute = %q, %v; want the replica %s", host, ok, routeHost(replica))
	}
}
