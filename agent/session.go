package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// connect dials the relay, says hello and returns the session the relay
// welcomed, ready to run.
func (a *Agent) connect(ctx context.Context) (*session, error) {
	// Login checks first: they may take seconds, and the relay gives a new
	// session only HandshakeTimeout to say hello.
	rc := a.rc.Load()
	idx, err := a.publishable(ctx, rc)
	if err != nil {
		return nil, err
	}
	sess, err := a.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial relay %s: %w", a.cfg.Relay, err)
	}
	s, err := a.hello(ctx, sess, rc, idx)
	if err != nil {
		sess.Close()
		return nil, err
	}
	return s, nil
}

// hello publishes the routes rc.routes[idx] on sess; once the relay has
// welcomed them, the session it returns is connected.
func (a *Agent) hello(ctx context.Context, sess protocol.Session, rc *routeConfig, idx []int) (*session, error) {
	ask := &askedRoutes{rc: rc, idx: idx}
	ctrl, welcome, err := handshake(ctx, sess, a.cfg.Token, a.cfg.Name, ask.routes(), protocol.FeatureRouteUpdates, protocol.FeatureAccess)
	if err != nil {
		return nil, err
	}
	enforces := slices.Contains(welcome.Features, protocol.FeatureAccess)
	live, published := ask.match(welcome.Accepted, enforces)
	a.warnUnenforced(a.log, live)
	a.noteRefused(welcome.Refused)
	a.setState("connected "+welcome.SessionID, "connected", slog.LevelInfo, "session", welcome.SessionID, "transport", sess.Transport(), "relay", a.cfg.Relay, "routes", published)
	a.markReplaced()
	if !a.stashChecked {
		a.stashChecked = true
		a.checkStash(welcome, live)
	}
	if a.OnWelcome != nil {
		a.OnWelcome(welcome)
	}
	s := &session{
		a:            a,
		log:          a.log.With("session", welcome.SessionID),
		id:           welcome.SessionID,
		since:        time.Now(),
		sess:         sess,
		ctrl:         ctrl,
		heartbeat:    time.Duration(welcome.HeartbeatMillis) * time.Millisecond,
		updates:      slices.Contains(welcome.Features, protocol.FeatureRouteUpdates),
		enforces:     enforces,
		out:          make(chan protocol.Message, 1),
		sched:        newScheduler(a.log.With("session", welcome.SessionID), pathDelayer(sess)),
		left:         make(chan struct{}),
		relayLeaving: make(chan struct{}),
		goAway:       make(chan string, 1),
	}
	s.routes.set(live)
	s.asked.Store(ask)
	return s, nil
}

// warnUnenforced logs each route whose access policy the relay ignores:
// the agent serves none of its streams.
func (a *Agent) warnUnenforced(log *slog.Logger, live map[uint32]*liveRoute) {
	for _, rt := range live {
		if rt.unenforced {
			log.Error("route not served: the relay does not enforce access policies; upgrade the relay", "host", rt.Host, "prefix", rt.Prefix)
		}
	}
}

// noteRefused logs the routes the relay refused and keeps the reasons for
// the status.
func (a *Agent) noteRefused(refusals []protocol.RefusedRoute) {
	refused := map[[2]string]string{}
	for _, ref := range refusals {
		a.log.Error("relay refused route", "host", ref.Host, "prefix", ref.Prefix, "reason", ref.Reason)
		refused[[2]string{ref.Host, normPrefix(ref.Prefix)}] = "the relay refused it: " + ref.Reason
	}
	a.mu.Lock()
	a.refused = refused
	a.mu.Unlock()
}

// checkStash logs, once per service, whether each published Stash's
// external_host fits its public URL.
func (a *Agent) checkStash(welcome *protocol.Welcome, live map[uint32]*liveRoute) {
	checked := map[string]bool{}
	for _, acc := range welcome.Accepted {
		rt := live[acc.ID]
		if rt != nil && len(acc.PublicURLs) > 0 && rt.guard.isStash() && !checked[rt.Service] {
			checked[rt.Service] = true
			checkStashConfig(a.log, rt.Route, acc.PublicURLs[0])
		}
	}
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
	if ps, ok := s.a.lossWatch(s.sess); ok {
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
	s.a.holdTCP()
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
	next := s.a.replacement()
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

// replacement returns a channel closed when the agent's next session is
// connected.
func (a *Agent) replacement() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.replaced == nil {
		a.replaced = make(chan struct{})
	}
	return a.replaced
}

// markReplaced tells a session being left that its replacement is connected.
func (a *Agent) markReplaced() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.replaced != nil {
		close(a.replaced)
		a.replaced = nil
	}
}

// lossWatch returns a QUIC session's loss counts to watch when the agent may
// change transport (auto); ok is false when there is nothing to watch.
func (a *Agent) lossWatch(sess protocol.Session) (ps protocol.PathStatser, ok bool) {
	ps, ok = a.pathStats(sess)
	if !ok || a.cfg.Transport != TransportAuto || a.cfg.LossCheck <= 0 {
		return nil, false
	}
	a.fallbackOnce.Do(func() {
		a.fallbackCC, a.fallbackErr = a.fallback()
		if a.fallbackErr != nil {
			a.log.Info("not watching QUIC for a lossy path: TCP could not do better here without BBR", "err", a.fallbackErr)
		}
	})
	if a.fallbackErr != nil {
		return nil, false
	}
	a.mu.Lock()
	off := time.Now().Before(a.noSwitchUntil)
	a.mu.Unlock()
	return ps, !off
}

// holdTCP has auto dial TCP for lossyHold: the QUIC path proved lossy.
func (a *Agent) holdTCP() {
	a.mu.Lock()
	a.tcpUntil = time.Now().Add(lossyHold)
	a.mu.Unlock()
}
