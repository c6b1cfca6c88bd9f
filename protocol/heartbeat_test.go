package protocol_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// pipeStream is one end of an in-memory stream: KeepAlive only reads and
// writes its control stream and closes it when done.
type pipeStream struct{ net.Conn }

func (pipeStream) CloseWrite() error { return nil }
func (s pipeStream) Abort()          { _ = s.Close() }

// fakeSession is the part of a Session that KeepAlive reads: the count of
// bytes that arrived from the peer on any stream.
type fakeSession struct {
	protocol.Session
	received atomic.Uint64
}

func (s *fakeSession) BytesReceived() uint64 { return s.received.Load() }

// keepAlivePair runs KeepAlive for a session whose control stream's other
// end is returned; done gets KeepAlive's result.
func keepAlivePair(t *testing.T, period time.Duration) (sess *fakeSession, peer net.Conn, done <-chan error) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	sess = &fakeSession{}
	errc := make(chan error, 1)
	go func() {
		errc <- protocol.KeepAlive(t.Context(), sess, pipeStream{a}, period, protocol.Control{})
	}()
	return sess, b, errc
}

// A peer that sends nothing at all is declared gone after HeartbeatMisses
// periods, and not before.
func TestKeepAliveSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 2 * time.Second
		_, peer, done := keepAlivePair(t, period)
		go drain(peer) // takes the pings, answers none
		start := time.Now()
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "nothing received") {
			t.Fatalf("KeepAlive returned %v", err)
		}
		took := time.Since(start)
		limit := protocol.HeartbeatMisses * period
		if took <= limit || took > limit+period {
			t.Errorf("a silent peer was declared gone after %v, want just past %v", took, limit)
		}
	})
}

// A peer whose heartbeats are stuck behind its data (a saturated uplink) is
// alive as long as the data arrives.
func TestKeepAliveDataCountsAsLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 2 * time.Second
		sess, peer, done := keepAlivePair(t, period)
		go drain(peer)
		ctx, cancel := context.WithTimeout(t.Context(), 10*protocol.HeartbeatMisses*period)
		defer cancel()
		tick := time.NewTicker(period / 2)
		defer tick.Stop()
		for {
			select {
			case err := <-done:
				t.Fatalf("KeepAlive gave up on a peer that sends data: %v", err)
			case <-ctx.Done():
				return
			case <-tick.C:
				sess.received.Add(64 << 10) // video bytes on another stream
			}
		}
	})
}

// A peer that answers pings is alive with no data at all.
func TestKeepAlivePongsCountAsLife(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 2 * time.Second
		sess, peer, done := keepAlivePair(t, period)
		go func() {
			// Answer each ping with a pong, and count the pong's bytes as
			// the session would.
			for {
				mt, body, err := protocol.ReadFrame(peer)
				if err != nil {
					return
				}
				if mt == protocol.MsgPing {
					if err := protocol.WriteMessage(peer, protocol.MsgPong, struct{}{}); err != nil {
						return
					}
					sess.received.Add(uint64(len(body)))
				}
			}
		}()
		select {
		case err := <-done:
			t.Fatalf("KeepAlive gave up on a peer that answers: %v", err)
		case <-time.After(10 * protocol.HeartbeatMisses * period):
		}
	})
}

func drain(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// A going-away notice travels on the control stream both ways, and the
// heartbeat goes on after it, for the streams still running.
func TestKeepAliveGoAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 2 * time.Second
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		sess := &fakeSession{}
		send := make(chan string, 1)
		got := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- protocol.KeepAlive(t.Context(), sess, pipeStream{a}, period,
				protocol.Control{GoAway: send, GoingAway: func(r string) { got <- r }})
		}()
		// The peer: answers pings, says it is going away, and reads ours.
		peerGot := make(chan string, 1)
		go func() {
			for {
				mt, body, err := protocol.ReadFrame(b)
				if err != nil {
					return
				}
				sess.received.Add(uint64(len(body)))
				switch mt {
				case protocol.MsgGoAway:
					peerGot <- string(body)
				case protocol.MsgPing:
					_ = protocol.WriteMessage(b, protocol.MsgPong, struct{}{})
				}
			}
		}()
		if err := protocol.WriteMessage(b, protocol.MsgGoAway, &protocol.GoAway{Reason: "relay restarting"}); err != nil {
			t.Fatal(err)
		}
		if r := <-got; r != "relay restarting" {
			t.Errorf("received reason %q", r)
		}
		send <- "agent stopping"
		if body := <-peerGot; !strings.Contains(body, "agent stopping") {
			t.Errorf("peer read %s", body)
		}
		time.Sleep(10 * protocol.HeartbeatMisses * period)
		select {
		case err := <-done:
			t.Fatalf("the heartbeat ended after the going-away notices: %v", err)
		default:
		}
	})
}

// Route messages travel on the control stream in order, both ways; a
// message its handler refuses ends the session.
func TestKeepAliveMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const period = 2 * time.Second
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		sess := &fakeSession{}
		out := make(chan protocol.Message, 2)
		var handled []uint64
		done := make(chan error, 1)
		go func() {
			done <- protocol.KeepAlive(t.Context(), sess, pipeStream{a}, period, protocol.Control{
				Out: out,
				Handle: func(mt protocol.MsgType, body []byte) error {
					if mt != protocol.MsgRoutes {
						return errors.New("not a route request")
					}
					var req protocol.RouteRequest
					if err := json.Unmarshal(body, &req); err != nil {
						return err
					}
					handled = append(handled, req.Seq)
					return nil
				},
			})
		}()
		peerGot := make(chan protocol.RouteUpdate, 2)
		go func() {
			for {
				mt, body, err := protocol.ReadFrame(b)
				if err != nil {
					return
				}
				if mt == protocol.MsgRouteUpdate {
					var u protocol.RouteUpdate
					_ = json.Unmarshal(body, &u)
					peerGot <- u
				}
			}
		}()
		out <- protocol.Message{Type: protocol.MsgRouteUpdate, Body: &protocol.RouteUpdate{Seq: 1}}
		out <- protocol.Message{Type: protocol.MsgRouteUpdate, Body: &protocol.RouteUpdate{Seq: 2}}
		if u1, u2 := <-peerGot, <-peerGot; u1.Seq != 1 || u2.Seq != 2 {
			t.Errorf("peer read updates %d, %d; want 1, 2", u1.Seq, u2.Seq)
		}
		for seq := uint64(1); seq <= 3; seq++ {
			if err := protocol.WriteMessage(b, protocol.MsgRoutes, &protocol.RouteRequest{Seq: seq}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if !slices.Equal(handled, []uint64{1, 2, 3}) {
			t.Errorf("handled %v, want [1 2 3]", handled)
		}
		if err := protocol.WriteMessage(b, protocol.MsgType(99), struct{}{}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil || !strings.Contains(err.Error(), "not a route request") {
			t.Errorf("KeepAlive ended with %v, want the handler's error", err)
		}
	})
}
