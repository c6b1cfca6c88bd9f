package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Control is what KeepAlive carries on the control stream next to the
// heartbeat: going-away notices and route updates, both ways.
type Control struct {
	// GoAway, when it yields a reason, tells the peer this side is going away.
	GoAway <-chan string
	// GoingAway is called with the reason when the peer says it is going
	// away; the heartbeat goes on, for the streams still running.
	GoingAway func(reason string)
	// Out are other messages to send (route updates), written in order.
	Out <-chan Message
	// Handle is called, in order, with every message that is neither
	// heartbeat nor going-away notice. An error ends the session.
	Handle func(t MsgType, body []byte) error
}

// Message is a control message to write: its type and its body, which is
// encoded as JSON.
type Message struct {
	Type MsgType
	Body any
}

// KeepAlive runs the heartbeat on a session's control stream, the same on
// both sides: it pings the peer every period and answers the peer's pings.
// It returns when the control stream fails, when ctx ends (nil), or when
// nothing at all — no heartbeat, no data on any stream — has arrived for
// HeartbeatMisses periods. Counting data as a sign of life keeps a session
// whose link is saturated by a video, where a ping may wait seconds behind the
// data in the socket buffers; the peer's own pings come the other way.
//
// It also carries the going-away notices and other control messages (c),
// both ways.
func KeepAlive(ctx context.Context, sess Session, ctrl Stream, period time.Duration, c Control) error {
	if period <= 0 {
		period = HeartbeatPeriod
	}
	silence := HeartbeatMisses * period

	// One writer: pings and pongs, never blocking the watchdog. A ping not
	// yet written when the next is due is dropped, not queued.
	var wmu sync.Mutex
	write := func(t MsgType, seq uint64) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeHeartbeat(ctrl, t, seq)
	}
	send := func(m Message) error {
		wmu.Lock()
		defer wmu.Unlock()
		return WriteMessage(ctrl, m.Type, m.Body)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 3)

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()     // ends the message writer
	defer ctrl.Close() // ends the reader and a blocked writer
	wg.Add(1)
	go func() {
		defer wg.Done()
		leaving := false // the peer said it is going away
		for {
			t, body, err := ReadFrame(ctrl)
			if err != nil {
				if leaving {
					// The peer went away as it said, closing the stream
					// (EOF) or its whole session: a clean end.
					err = nil
				}
				failed <- err
				return
			}
			if t == MsgGoAway {
				leaving = true
				var g GoAway
				if err := json.Unmarshal(body, &g); err != nil {
					failed <- fmt.Errorf("protocol: bad go-away: %w", err)
					return
				}
				if c.GoingAway != nil {
					c.GoingAway(g.Reason)
				}
				continue
			}
			if t == MsgPong {
				continue
			}
			if t != MsgPing {
				if c.Handle == nil {
					continue // a message this side does not take
				}
				if err := c.Handle(t, body); err != nil {
					failed <- fmt.Errorf("protocol: %v message: %w", t, err)
					return
				}
				continue
			}
			var hb heartbeat
			if err := json.Unmarshal(body, &hb); err != nil {
				failed <- fmt.Errorf("protocol: bad heartbeat: %w", err)
				return
			}
			wg.Add(1) // this goroutine is counted, so the count is not zero here
			go func() {
				defer wg.Done()
				_ = write(MsgPong, hb.Seq)
			}()
		}
	}()

	if c.Out != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-c.Out:
					if err := send(m); err != nil {
						select {
						case failed <- err:
						default:
						}
						return
					}
				}
			}
		}()
	}

	pinging := make(chan struct{}, 1)
	ping := func(seq uint64) {
		select {
		case pinging <- struct{}{}:
		default:
			return // the last ping is still waiting to be written
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-pinging }()
			if err := write(MsgPing, seq); err != nil {
				select {
				case failed <- err:
				default:
				}
			}
		}()
	}

	// Liveness is checked four times a period, pings go once a period.
	const checks = 4
	t := time.NewTicker(period / checks)
	defer t.Stop()
	lastBytes, lastAlive := sess.BytesReceived(), time.Now()
	for tick := uint64(0); ; tick++ {
		if tick%checks == 0 {
			ping(tick/checks + 1)
		}
		select {
		case <-ctx.Done():
			return nil
		case reason := <-c.GoAway:
			c.GoAway = nil // said once
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = send(Message{MsgGoAway, &GoAway{Reason: reason}})
			}()
		case err := <-failed:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-t.C:
		}
		if b := sess.BytesReceived(); b != lastBytes {
			lastBytes, lastAlive = b, time.Now()
		} else if quiet := time.Since(lastAlive); quiet > silence {
			return fmt.Errorf("protocol: nothing received from the peer for %v", quiet.Round(10*time.Millisecond))
		}
	}
}
