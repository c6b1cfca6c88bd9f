package relay

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/internal/memsession"
	"github.com/burrow-tunnel/burrow/protocol"
)

// These tests run one agent session against an agent played by the test
// over an in-memory session, under synctest: its clock drives the handshake
// deadline and the heartbeat, and a goroutine the session leaves behind
// fails the test.

// sessionServer is a relay with no listener, granting nas.test to the
// agent with token "tok".
func sessionServer(t *testing.T) *Server {
	s := &Server{
		cfg:     Config{Agents: []AgentGrant{{Name: "nas", TokenSHA256: sha256.Sum256([]byte("tok")), Hosts: []string{"nas.test"}}}},
		log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("role", "relay"),
		reg:     newRegistry(),
		metrics: newMetrics(),
	}
	s.conf.Store(&s.cfg)
	return s
}

// serve runs serveSession on the relay's side of a new pair until ctx ends,
// and returns the agent's side and a channel closed when serveSession returned.
func serve(ctx context.Context, s *Server) (*memsession.Session, <-chan struct{}) {
	agentSide, relaySide := memsession.Pair()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serveSession(ctx, relaySide)
	}()
	return agentSide, done
}

// hello plays the agent's side of the handshake and returns its control stream.
func hello(t *testing.T, agentSide protocol.Session) protocol.Stream {
	t.Helper()
	ctrl, err := agentSide.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h := protocol.Hello{Version: protocol.Version, Token: "tok", Agent: "nas", Routes: []protocol.Route{{Host: "nas.test"}}}
	if err := protocol.WriteMessage(ctrl, protocol.MsgHello, &h); err != nil {
		t.Fatal(err)
	}
	w, err := protocol.ReadAnswer(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Accepted) != 1 {
		t.Fatalf("welcome %+v, want nas.test accepted", w)
	}
	return ctrl
}

// The relay stopping ends a handshake the agent does not finish at once,
// not at the handshake's deadline.
func TestHandshakeEndsWithRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		agentSide, done := serve(ctx, sessionServer(t))
		defer agentSide.Close()
		// A control stream, and no hello on it.
		if _, err := agentSide.OpenStream(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		cancel()
		stopped := time.Now()
		<-done
		if d := time.Since(stopped); d != 0 {
			t.Errorf("the session's handshake went on %v after the relay stopped", d)
		}
	})
}

// An agent that falls silent (a crash, a partition) loses its session, and
// its routes, after HeartbeatMisses periods with nothing received.
func TestSessionEndsWhenAgentFallsSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := sessionServer(t)
		agentSide, done := serve(t.Context(), s)
		hello(t, agentSide)
		if s.reg.lookup("nas.test", "/") == nil {
			t.Fatal("route not published")
		}
		start := time.Now()
		<-done
		if silence := protocol.HeartbeatMisses * protocol.HeartbeatPeriod; time.Since(start) <= silence || time.Since(start) > silence+protocol.HeartbeatPeriod {
			t.Errorf("session ended %v after the agent fell silent, want just over %v", time.Since(start), silence)
		}
		if s.reg.lookup("nas.test", "/") != nil {
			t.Error("route still published after its session ended")
		}
	})
}

// A session whose agent answers lives on until the agent closes it, or the
// relay stops; either ends it at once and unpublishes its routes.
func TestSessionEnds(t *testing.T) {
	for _, by := range []string{"agent", "relay"} {
		t.Run(by, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := sessionServer(t)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				agentSide, done := serve(ctx, s)
				go protocol.KeepAlive(t.Context(), agentSide, hello(t, agentSide), protocol.HeartbeatPeriod, protocol.Control{})
				time.Sleep(time.Hour)
				if s.reg.lookup("nas.test", "/") == nil {
					t.Fatal("route not published an hour on")
				}
				if by == "agent" {
					agentSide.Close()
				} else {
					cancel()
				}
				stopped := time.Now()
				<-done
				if d := time.Since(stopped); d != 0 {
					t.Errorf("session ended %v after the %s closed it", d, by)
				}
				if s.reg.lookup("nas.test", "/") != nil {
					t.Error("route still published after its session ended")
				}
				agentSide.Close()
			})
		})
	}
}
