package relay

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// pauseHandler holds the goroutine that logs msg until release is closed.
type pauseHandler struct {
	slog.Handler
	msg     string
	paused  chan struct{}
	release chan struct{}
}

func (h *pauseHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		close(h.paused)
		<-h.release
	}
	return h.Handler.Handle(ctx, r)
}

func (h *pauseHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.Handler = h.Handler.WithAttrs(as)
	return &c
}

// A reload that grants a session's agent a host once the session has ended,
// and before it is gone from the live sessions, publishes nothing on it: a
// route left on a dead session would hold its host against every other
// agent until the relay restarts.
func TestReloadPublishesNothingOnEndedSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := sessionServer(t)
		cfg := reloadable(t, s, "nas.test")
		pause := &pauseHandler{Handler: s.log.Handler(), msg: "agent session ended", paused: make(chan struct{}), release: make(chan struct{})}
		s.log = slog.New(pause)
		agentSide, done := serve(t.Context(), s)
		agentWithUpdates(t, agentSide, []string{protocol.FeatureRouteUpdates}, "nas.test", "extra.test")
		synctest.Wait()
		agentSide.Close()
		<-pause.paused // the session has ended and unpublished its routes

		cfg.Agents[0].Hosts = []string{"nas.test", "extra.test"}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		close(pause.release)
		<-done
		if rt := s.reg.lookup("extra.test", "/"); rt != nil {
			t.Errorf("extra.test published on session %p after it ended", rt.session)
		}
	})
}

// A session welcomed as the relay begins to stop may be told so twice:
// by drain, which saw it among the live sessions, and by its own check of
// draining. The second notice must not block its serveSession, which the
// relay's shutdown waits for.
func TestGoingAwayTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := &tunnelSession{goAway: make(chan string, 1)}
		said := make(chan struct{})
		go func() {
			defer close(said)
			ts.goingAway("relay shutting down") // drain
			ts.goingAway("relay shutting down") // serveSession
		}()
		synctest.Wait()
		select {
		case <-said:
		default:
			t.Fatal("the second going-away notice blocks")
		}
		<-ts.goAway
	})
}

// The relay's work for a route request grows with the routes asked for and
// published, not with their product: an agent may send as many requests,
// each as large as a control message holds, as it likes. A request for n
// routes, all published already, takes less time than n*n/4 checks of a
// route would.
func TestRouteRequestCostIsLinear(t *testing.T) {
	const n = 800
	s := sessionServer(t)
	reloadable(t, s, "nas.test")
	s.log = slog.New(slog.DiscardHandler)
	agentSide, done := serve(t.Context(), s)
	defer func() { agentSide.Close(); <-done }()
	out, updates := agentWithUpdates(t, agentSide, []string{protocol.FeatureRouteUpdates}, "nas.test")
	var req []protocol.Route
	for i := range n {
		req = append(req, protocol.Route{Host: "nas.test", Prefix: fmt.Sprintf("/p%d", i)})
	}
	best := func(f func()) time.Duration {
		d := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			f()
			d = min(d, time.Since(start))
		}
		return d
	}
	seq := uint64(0)
	ask := func() {
		seq++
		out <- protocol.Message{Type: protocol.MsgRoutes, Body: &protocol.RouteRequest{Seq: seq, Routes: req}}
		if u := <-updates; len(u.Accepted) != n {
			t.Fatalf("%d of %d routes accepted", len(u.Accepted), n)
		}
	}
	ask() // publishes them
	request := best(ask)
	g := s.grantNamed("nas")
	checks := best(func() {
		for i := range n * n / 4 {
			s.checkRoute(g, req[i%n])
		}
	})
	if request > checks {
		t.Errorf("a request for %d published routes takes %v, more than %d route checks (%v)", n, request, n*n/4, checks)
	}
}
