package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/internal/memsession"
	"github.com/burrow-tunnel/burrow/protocol"
)

// These tests run a session against a relay played by the test over an
// in-memory session, under synctest: its clock drives the heartbeat, the
// loss checks and the drain, so hours of them take no time, and a goroutine
// a session leaves behind fails the test.

const testPeriod = 2 * time.Second // the heartbeat the test relay asks for

func testAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	cfg.Relay, cfg.RelayFingerprint, cfg.Token = "relay.test:7835", "sha256:"+strings.Repeat("00", 32), "tok"
	// A tcp:// service is never probed for a login: no socket is opened.
	cfg.Routes = []Route{{Host: "nas.test", Service: "tcp://127.0.0.1:1"}}
	a, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// welcome plays the relay's side of the handshake on relaySide and returns
// its control stream, or nil when the handshake failed.
func welcome(t *testing.T, relaySide protocol.Session) protocol.Stream {
	ctrl, err := relaySide.AcceptStream(t.Context())
	if err != nil {
		t.Error(err)
		return nil
	}
	if _, err := protocol.ReadHello(ctrl); err != nil {
		t.Error(err)
		return nil
	}
	w := protocol.Welcome{Version: protocol.Version, SessionID: "s1", HeartbeatMillis: testPeriod.Milliseconds(),
		Accepted: []protocol.AcceptedRoute{{ID: 1, Host: "nas.test", PublicURLs: []string{"https://nas.test"}}}}
	if err := protocol.WriteMessage(ctrl, protocol.MsgWelcome, &w); err != nil {
		t.Error(err)
		return nil
	}
	return ctrl
}

// connected returns a session the test relay has welcomed, with the relay's
// side of it.
func connected(t *testing.T, a *Agent) (*session, *memsession.Session, protocol.Stream) {
	t.Helper()
	agentSide, relaySide := memsession.Pair()
	ctrl := make(chan protocol.Stream, 1)
	go func() { ctrl <- welcome(t, relaySide) }()
	s, err := a.newLink(target{relay: "relay.test:7835", addr: "relay.test:7835"}, 0).hello(t.Context(), agentSide, a.rc.Load(), []int{0})
	if err != nil {
		t.Fatal(err)
	}
	return s, relaySide, <-ctrl
}

// A relay that falls silent (a crash, a partition) ends the session after
// HeartbeatMisses periods with nothing received.
func TestSessionEndsWhenRelayFallsSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, _ := connected(t, testAgent(t, Config{}))
		start := time.Now()
		err := s.run(t.Context())
		d := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "session lost") || !strings.Contains(err.Error(), "nothing received") {
			t.Errorf("run: %v, want session lost: nothing received", err)
		}
		if silence := protocol.HeartbeatMisses * testPeriod; d <= silence || d > silence+testPeriod {
			t.Errorf("session ended %v after the relay fell silent, want just over %v", d, silence)
		}
	})
}

// A session whose relay answers lives on; the agent stopping ends it at
// once, with the streams it serves (one waiting for its header here, which
// would otherwise wait HandshakeTimeout).
func TestSessionEndsWithAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, relaySide, ctrl := connected(t, testAgent(t, Config{}))
		go protocol.KeepAlive(t.Context(), relaySide, ctrl, testPeriod, protocol.Control{})
		if _, err := relaySide.OpenStream(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(5*time.Second, cancel)
		start := time.Now()
		err := s.run(ctx)
		if d := time.Since(start); d != 5*time.Second || !errors.Is(err, context.Canceled) {
			t.Errorf("run ended after %v with %v, want 5s, when the agent stopped", d, err)
		}
	})
}

// The relay closing the session ends it at once.
func TestSessionEndsWithRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, relaySide, ctrl := connected(t, testAgent(t, Config{}))
		go protocol.KeepAlive(t.Context(), relaySide, ctrl, testPeriod, protocol.Control{})
		time.AfterFunc(time.Minute, func() { relaySide.Close() })
		start := time.Now()
		err := s.run(t.Context())
		if d := time.Since(start); d != time.Minute || err == nil || !strings.Contains(err.Error(), "session lost") {
			t.Errorf("run ended after %v with %v, want session lost after a minute", d, err)
		}
	})
}

// Once the QUIC path proves lossy, the session is handed over: the agent
// is told to connect anew at once, while the session serves on until its
// replacement is connected and its last stream is done.
func TestHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := testAgent(t, Config{Transport: TransportAuto, LossCheck: time.Second})
		a.fallback = func() (string, error) { return "cubic", nil }
		var lossy atomic.Bool
		lossy.Store(true)
		a.pathStats = func(protocol.Session) (protocol.PathStatser, bool) { return &fakeLoss{lossy: &lossy}, true }
		s, relaySide, ctrl := connected(t, a)
		go protocol.KeepAlive(t.Context(), relaySide, ctrl, testPeriod, protocol.Control{})
		// A stream that sends no header stays active until the agent's
		// header deadline, HandshakeTimeout after it opened.
		if _, err := relaySide.OpenStream(t.Context()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ended := make(chan error, 1)
		go func() { ended <- s.run(t.Context()) }()

		<-s.left
		if d := time.Since(start); d != lossyChecks*time.Second {
			t.Errorf("left the session after %v, want %d loss checks", d, lossyChecks)
		}
		if _, ok := s.l.lossyTCP(); !ok {
			t.Error("the agent will not dial TCP next")
		}
		time.Sleep(time.Hour) // the replacement is slow to connect
		synctest.Wait()
		select {
		case err := <-ended:
			t.Fatalf("session ended (%v) before its replacement connected", err)
		default:
		}
		// The stream opened before the hour has ended by now: the drain
		// lasts the grace.
		s.l.markReplaced()
		replaced := time.Now()
		err := <-ended
		if d := time.Since(replaced); !errors.Is(err, errLossySwitch) || d != 2*time.Second {
			t.Errorf("run ended %v after the replacement connected with %v, want errLossySwitch after the grace", d, err)
		}
	})
}

// The relay losing a session being handed over ends it at once.
func TestHandOverEndsWithSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := testAgent(t, Config{Transport: TransportAuto, LossCheck: time.Second})
		a.fallback = func() (string, error) { return "cubic", nil }
		var lossy atomic.Bool
		lossy.Store(true)
		a.pathStats = func(protocol.Session) (protocol.PathStatser, bool) { return &fakeLoss{lossy: &lossy}, true }
		s, relaySide, ctrl := connected(t, a)
		go protocol.KeepAlive(t.Context(), relaySide, ctrl, testPeriod, protocol.Control{})
		ended := make(chan error, 1)
		go func() { ended <- s.run(t.Context()) }()
		<-s.left
		time.Sleep(time.Minute)
		relaySide.Close()
		closed := time.Now()
		if err := <-ended; !errors.Is(err, errLossySwitch) || time.Since(closed) != 0 {
			t.Errorf("run ended %v after its session with %v, want errLossySwitch at once", time.Since(closed), err)
		}
	})
}

// The agent stopping ends a handshake the relay does not answer at once,
// not at the handshake's deadline.
func TestHandshakeEndsWithAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agentSide, relaySide := memsession.Pair()
		defer relaySide.Close()
		go func() {
			// The relay reads the hello, and answers nothing.
			if ctrl, err := relaySide.AcceptStream(t.Context()); err == nil {
				_, _ = protocol.ReadHello(ctrl)
			}
		}()
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start := time.Now()
		_, _, err := handshake(ctx, agentSide, "tok", "nas", nil)
		if d := time.Since(start); err == nil || d != time.Second {
			t.Errorf("handshake ended after %v with %v, want an error when the agent stopped (1s)", d, err)
		}
	})
}
