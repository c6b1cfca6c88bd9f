package relay

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"

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

// An agent may send route requests as large as protocol.MaxRoutes as often
// as the rate allows; each is answered in full, and asking again for what is
// published keeps it published. (The cap is what bounds the relay's work for
// one request: a larger one ends the session, see TestRouteRequestBounds.)
func TestLargestRouteRequestIsAnswered(t *testing.T) {
	const n = protocol.MaxRoutes
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
	for seq := range uint64(3) {
		out <- protocol.Message{Type: protocol.MsgRoutes, Body: &protocol.RouteRequest{Seq: seq + 1, Routes: req}}
		select {
		case u := <-updates:
			if len(u.Accepted) != n || len(u.Refused) != 0 {
				t.Fatalf("request %d: %d of %d routes accepted, %d refused", seq+1, len(u.Accepted), n, len(u.Refused))
			}
		case <-done:
			t.Fatalf("request %d ended the session", seq+1)
		}
	}
}
