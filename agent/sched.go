package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Interactive before bulk: what the agent sends toward the relay.
//
// Every stream starts interactive: a page, an API answer, an image, the
// first megabyte of a video. It writes straight into the tunnel, and while
// it writes, bulk streams hold back. Once a stream has moved bulkAfter in
// one run it is bulk: its data goes in chunks, paced at the session's bulk
// rate (rateController), so that it never queues in front of what comes
// next. A stream that pauses for runGap starts a new run, interactive
// again: a kept-alive connection that carried a video may carry a page next.
const (
	bulkAfter = 1 << 20
	runGap    = 250 * time.Millisecond
	// paceTick is how often the controller samples the path while bulk
	// streams send; it sleeps otherwise.
	paceTick = 10 * time.Millisecond
	// bulkIdle is how long after the last bulk write the controller
	// sleeps, and rateForget how long after that it forgets its rate.
	bulkIdle   = time.Second
	rateForget = 10 * time.Second
	// yieldMax bounds how long bulk waits for interactive writes to
	// finish: one blocked by a slow visitor must not stall the video.
	yieldMax = 10 * time.Millisecond
	// burstAllowance is how far behind its schedule the bulk pacer may
	// catch up at once (after a sleep that overslept).
	burstAllowance = 2 * time.Millisecond
	// A bulk chunk is chunkTime at the bulk rate, within [minChunk,
	// maxChunk]: small enough that an answer written after it does not
	// wait long behind it in the transport, large enough to cost few
	// writes; unpaced, chunks are as large as the copy's reads.
	chunkTime = 2 * time.Millisecond
	minChunk  = 16 << 10
	maxChunk  = 256 << 10
)

// scheduler orders one session's writes toward the relay: interactive
// first, bulk paced at a rate its run loop sets from the path's delay.
type scheduler struct {
	log  *slog.Logger
	path protocol.PathDelayer // nil: the transport reports nothing; bulk goes unpaced
	wake chan struct{}        // a bulk write wakes the controller (capacity 1)

	mu       sync.Mutex
	rate     float64       // guarded by mu; bulk bytes per second, 0 unpaced
	next     time.Time     // guarded by mu; when the next bulk byte may go
	lastBulk time.Time     // guarded by mu; the last bulk write
	ticking  bool          // guarded by mu; the controller samples the path
	busy     int           // guarded by mu; interactive writes in progress
	idle     chan struct{} // guarded by mu; closed when busy drops to 0, nil while 0
	entered  time.Time     // guarded by mu; when the last interactive write began
}

// newScheduler schedules the writes of a session; path may be nil.
func newScheduler(log *slog.Logger, path protocol.PathDelayer) *scheduler {
	return &scheduler{log: log, path: path, wake: make(chan struct{}, 1)}
}

// run drives the bulk rate from the path's delay until ctx ends: it samples
// every paceTick while bulk streams send, and sleeps while none does.
func (s *scheduler) run(ctx context.Context) error {
	if s.path == nil {
		return nil
	}
	var c rateController
	var stopped time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		if !stopped.IsZero() && time.Since(stopped) > rateForget {
			c = rateController{} // the path may have changed since
			s.setRate(0)
		}
		stopped = s.tick(ctx, &c)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// tick samples the path into c until no bulk stream has written for
// bulkIdle or ctx ends, and returns when it stopped.
func (s *scheduler) tick(ctx context.Context, c *rateController) time.Time {
	t := time.NewTicker(paceTick)
	defer t.Stop()
	var logged time.Time
	for {
		select {
		case <-ctx.Done():
			return time.Now()
		case <-t.C:
		}
		now := time.Now()
		d := s.path.PathDelay()
		rate := c.observe(now, d)
		if now.Sub(logged) >= time.Second {
			logged = now
			s.log.Debug("bulk pacing", "rate_mbit", int(rate*8/1e6), "rtt", d.RTT.Round(time.Millisecond/10), "min_rtt", d.MinRTT.Round(time.Millisecond/10))
		}
		s.mu.Lock()
		s.rate = rate
		done := now.Sub(s.lastBulk) > bulkIdle
		if done {
			s.ticking = false
		}
		s.mu.Unlock()
		if done {
			return now
		}
	}
}

func (s *scheduler) setRate(r float64) {
	s.mu.Lock()
	s.rate = r
	s.mu.Unlock()
}

// bulkRate is the rate bulk streams are paced at; 0 is unpaced.
func (s *scheduler) bulkRate() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rate
}

// chunk is the size bulk data is written in now.
func (s *scheduler) chunk() int {
	r := s.bulkRate()
	if r == 0 {
		return maxChunk
	}
	return min(max(int(r*chunkTime.Seconds()), minChunk), maxChunk)
}

// reserve books n bulk bytes on the pacer's schedule and returns how long
// the writer must wait before writing them.
func (s *scheduler) reserve(n int) time.Duration {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastBulk = now
	if !s.ticking {
		s.ticking = true
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	if s.rate == 0 {
		s.next = now
		return 0
	}
	if earliest := now.Add(-burstAllowance); s.next.Before(earliest) {
		s.next = earliest
	}
	at := s.next
	s.next = at.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	return at.Sub(now)
}

// enter and leave bracket an interactive write.
func (s *scheduler) enter() {
	s.mu.Lock()
	if s.busy == 0 {
		s.idle = make(chan struct{})
	}
	s.busy++
	s.entered = time.Now()
	s.mu.Unlock()
}

func (s *scheduler) leave() {
	s.mu.Lock()
	s.busy--
	if s.busy == 0 {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// yield waits until no interactive write is in progress, or until the
// last one began yieldMax ago: a write that takes longer waits for its
// reader (a visitor on a slow phone), not for the tunnel, and must not hold
// the video back.
func (s *scheduler) yield() {
	s.mu.Lock()
	idle := s.idle
	wait := yieldMax - time.Since(s.entered)
	s.mu.Unlock()
	if idle == nil || wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// stream returns st with its writes scheduled.
func (s *scheduler) stream(st protocol.Stream) protocol.Stream {
	return &schedStream{Stream: st, s: s}
}

// schedStream is a stream whose writes go through its session's scheduler.
// Its writes come from one goroutine at a time, as io.Copy makes them.
type schedStream struct {
	protocol.Stream
	s    *scheduler
	run  int64     // bytes written in this run
	last time.Time // when the last write returned
}

func (w *schedStream) Write(p []byte) (n int, err error) {
	if time.Since(w.last) >= runGap {
		w.run = 0
	}
	defer func() { w.last = time.Now() }()
	if w.run < bulkAfter {
		k := int(min(int64(len(p)), bulkAfter-w.run))
		w.s.enter()
		m, err := w.Stream.Write(p[:k])
		w.s.leave()
		n += m
		w.run += int64(m)
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	for len(p) > 0 {
		k := min(len(p), w.s.chunk())
		w.s.yield()
		if d := w.s.reserve(k); d > 0 {
			time.Sleep(d)
		}
		m, err := w.Stream.Write(p[:k])
		n += m
		w.run += int64(m)
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// pathDelayer is sess's delay reports, or nil when it makes none.
func pathDelayer(sess protocol.Session) protocol.PathDelayer {
	if pd, ok := sess.(protocol.PathDelayer); ok {
		return pd
	}
	return nil
}
