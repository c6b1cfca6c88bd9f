package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/protocol"
)

// session is one session the relay has welcomed, from the Welcome until it
// ends: connect authenticates and publishes, run serves.
type session struct {
	a         *Agent
	l         *link // the link that connected it
	log       *slog.Logger
	sess      protocol.Session
	ctrl      protocol.Stream // the control stream; its end is the session's
	routes    routeTable      // by the id the relay gave each route
	heartbeat time.Duration
	// updates: the relay takes route requests on the live session.
	updates bool
	// enforces: the relay enforces routes' access policies.
	enforces bool
	out      chan protocol.Message       // route requests to send
	asked    atomic.Pointer[askedRoutes] // what routes holds
	pending  atomic.Pointer[askedRoutes] // what the last route request asked for
	seq      atomic.Uint64               // the last route request's
	sched    *scheduler                  // orders what the streams send: interactive first, bulk paced

	id     string        // the relay's session id
	since  time.Time     // welcomed at
	active atomic.Int64  // streams being served
	left   chan struct{} // closed when the agent leaves this session for a new one

	leaveOnce    sync.Once
	relayOnce    sync.Once
	relayLeaving chan struct{} // closed when the agent leaves the relay's session for a new one
	goAway       chan string   // a reason here tells the relay the agent is going away
}

// checkStash logs whether each published Stash route's external_host fits
// its public URL (stashcheck.go).
func (a *Agent) checkStash(welcome *protocol.Welcome, live map[uint32]*liveRoute) {
	var routes []publishedStash
	for _, acc := range welcome.Accepted {
		if rt := live[acc.ID]; rt != nil && len(acc.PublicURLs) > 0 && rt.guard.isStash() {
			routes = append(routes, publishedStash{rt.Route, acc.PublicURLs[0]})
		}
	}
	a.checkStashConfigs(routes)
}

// run serves the session's streams until the session ends, ctx does, or the
// agent has left it for a new session and it has served its streams out
// (handOver). It returns why the session ended (errLossySwitch once the
// agent left it), and never while one of its goroutines still runs.
func (s *session) run(ctx context.Context) (err error) {
	// The session outlives ctx by its drain (finishOnStop).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g, sctx := errgroup.WithContext(sctx)
	g.Go(func() error { return s.finishOnStop(ctx, sctx, cancel) })
	defer func() {
		cancel()
		s.ctrl.Close()
		s.sess.Close() // ends the streams still open
		if gerr := g.Wait(); gerr != nil {
			err = gerr
		}
		select {
		case <-s.left:
			err = errLossySwitch // whatever ended it since
		default:
		}
	}()
	g.Go(func() error {
		defer cancel() // the control stream's end is the session's end
		return s.keepAlive(sctx)
	})
	g.Go(func() error { return s.sched.run(sctx) })
	if ps, ok := s.l.lossWatch(s.sess); ok {
		g.Go(func() error { return s.leaveIfLossy(sctx, ps) })
	}
	g.Go(func() error { return s.leaveWithRelay(sctx) })
	for {
		st, aerr := s.sess.AcceptStream(sctx)
		if aerr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("session lost: %w", aerr)
		}
		s.active.Add(1)
		g.Go(func() error {
			defer s.active.Add(-1)
			s.a.serveStream(sctx, s.log, &s.routes, s.sched.stream(st))
			return nil
		})
	}
}

// keepAlive runs the heartbeat on the control stream until it fails or ctx
// ends; it carries the going-away notices both ways.
func (s *session) keepAlive(ctx context.Context) error {
	err := protocol.KeepAlive(ctx, s.sess, s.ctrl, s.heartbeat, protocol.Control{
		GoAway: s.goAway,
		GoingAway: func(reason string) {
			s.leaveRelay("relay going away: connecting anew while this session finishes its streams", "reason", reason)
		},
		Out:    s.out,
		Handle: s.handle,
	})
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("session lost: %w", err)
}

// leaveRelay has the agent connect anew while this session finishes its
// streams (leaveWithRelay); the first call logs why.
func (s *session) leaveRelay(why string, args ...any) {
	s.relayOnce.Do(func() {
		s.log.Info(why, args...)
		close(s.relayLeaving)
	})
}

// leaveIfLossy watches the QUIC path's packet loss until ctx ends; when the
// path proves lossy, the agent moves to TCP and this session is handed over.
func (s *session) leaveIfLossy(ctx context.Context, ps protocol.PathStatser) error {
	if watchLoss(ctx, s.log, ps, s.a.cfg.LossCheck) != errLossySwitch {
		return nil
	}
	s.l.holdTCP()
	return s.handOver(ctx)
}

// leaveWithRelay hands the session over when the relay says it is going
// away: a relay restarting, or one of several shutting down.
func (s *session) leaveWithRelay(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.relayLeaving:
		return s.handOver(ctx)
	}
}

// finishOnStop waits for the agent to stop (stop ends), then tells the relay
// the agent is going away, so that new requests go to its replicas, lets the
// streams in flight finish for up to shutdown_grace, and ends the session.
func (s *session) finishOnStop(stop, sctx context.Context, end context.CancelFunc) error {
	select {
	case <-sctx.Done():
		return nil
	case <-stop.Done():
	}
	defer end()
	s.goAway <- "agent stopping"
	if n := s.active.Load(); n > 0 {
		s.log.Info("agent stopping: finishing the streams in flight", "streams", n, "grace", s.a.cfg.ShutdownGrace)
	}
	deadline := time.Now().Add(s.a.cfg.ShutdownGrace)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for s.active.Load() > 0 && time.Now().Before(deadline) {
		select {
		case <-sctx.Done():
			return nil
		case <-t.C:
		}
	}
	return nil
}

// handOver leaves the session for a new one: the agent connects anew at once
// (left is closed), while this session serves on until the new one is
// connected and its own streams are done (drain). The error it then returns
// ends the session; ctx ending (the session lost, or the agent stopped) ends
// the hand-over sooner.
func (s *session) handOver(ctx context.Context) error {
	next := s.l.replacement()
	s.leaveOnce.Do(func() { close(s.left) })
	drain(ctx, &s.active, next)
	return errLossySwitch
}

// drain returns once a session being left is no longer needed: when the
// session replacing it is connected (replaced closed) and it has served its
// streams, or drainFor after that; or as soon as ctx ends. Until its
// replacement is up it serves on, however long that takes.
func drain(ctx context.Context, active *atomic.Int64, replaced <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-replaced:
	}
	// The relay moves the routes when the new session says hello; the grace
	// covers requests already on their way to this one.
	const grace, poll = 2 * time.Second, 250 * time.Millisecond
	start := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if since := time.Since(start); since >= drainFor || (since >= grace && active.Load() == 0) {
			return
		}
	}
}
