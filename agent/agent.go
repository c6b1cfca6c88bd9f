package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// stableAfter is how long a session must last for the backoff to start over.
const stableAfter = 10 * time.Second

// Agent keeps one session to the relay and serves its streams.
type Agent struct {
	cfg Config
	log *slog.Logger
	tls *tls.Config

	// OnWelcome, if set, is called with each accepted session's Welcome.
	OnWelcome func(*protocol.Welcome)

	guards       []*loginGuard // one per cfg.Routes entry
	stashChecked bool          // external_host checked; touched by Run's goroutine only

	mu       sync.Mutex
	state    string    // guarded by mu; the last state logged
	tcpUntil time.Time // guarded by mu; auto dials TCP until then (a lossy QUIC path)
	// noSwitchUntil stops the loss check after TCP failed to connect; guarded by mu.
	noSwitchUntil time.Time
	// replaced is closed when the session after a switch is connected: the
	// session left keeps serving until then; guarded by mu.
	replaced chan struct{}

	fallbackOnce sync.Once
	fallbackCC   string // congestion control for leaving a lossy path
	fallbackErr  error  // why the agent cannot leave one

	draining sync.WaitGroup // sessions left for a new one, finishing their streams

	// pathStats gives a session's loss counts, and fallback the congestion
	// control to leave a lossy path with; tests replace them.
	pathStats func(protocol.Session) (protocol.PathStatser, bool)
	fallback  func() (string, error)
}

type liveRoute struct {
	Route
	addr  string // host:port to dial
	guard *loginGuard
}

// New validates cfg and prepares an agent.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	a := &Agent{cfg: cfg, log: log, tls: tc, pathStats: func(s protocol.Session) (protocol.PathStatser, bool) {
		ps, ok := s.(protocol.PathStatser)
		return ps, ok
	}, fallback: lossyFallback}
	for _, r := range cfg.Routes {
		a.guards = append(a.guards, newLoginGuard(r))
	}
	return a, nil
}

// Run connects, serves, and reconnects with backoff until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.draining.Wait()
	b := newBackoff()
	a.log.Info("connecting to relay", "relay", a.cfg.Relay, "transport", a.cfg.Transport)
	if a.cfg.Transport != TransportTCP {
		if advice := transport.UDPBufferAdvice(); advice != "" {
			a.log.Warn("QUIC may be slow: " + advice)
		}
	}
	for {
		start := time.Now()
		err := a.session(ctx)
		if ctx.Err() != nil {
			a.setState("stopped", "agent stopped", slog.LevelInfo)
			return nil
		}
		if errors.Is(err, errLossySwitch) {
			b.reset()
			continue
		}
		if time.Since(start) > stableAfter {
			b.reset()
		}
		d := b.next()
		var rj *protocol.RejectError
		switch {
		case errors.As(err, &rj):
			a.setState("refused: "+rj.Error(), "relay refused the agent", slog.LevelError, "code", rj.Reject.Code, "reason", rj.Reject.Message, "retry_in", d.Round(time.Millisecond))
		default:
			a.setState("disconnected: "+errString(err), "not connected", slog.LevelWarn, "err", err, "retry_in", d.Round(time.Millisecond))
		}
		if wait(ctx, d) != nil {
			a.setState("stopped", "agent stopped", slog.LevelInfo)
			return nil
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// setState logs msg when key differs from the last state; a repeat of the
// same state (the same error on every retry) goes to debug.
func (a *Agent) setState(key, msg string, level slog.Level, args ...any) {
	a.mu.Lock()
	same := a.state == key
	a.state = key
	a.mu.Unlock()
	if same {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, msg, args...)
}

// session runs one session: dial, handshake, serve streams until it ends.
func (a *Agent) session(ctx context.Context) error {
	// Login checks first: they may take seconds, and the relay gives a new
	// session only HandshakeTimeout to say hello.
	idx, err := a.publishable(ctx)
	if err != nil {
		return err
	}
	sess, err := a.dial(ctx)
	if err != nil {
		return fmt.Errorf("dial relay %s: %w", a.cfg.Relay, err)
	}
	handedOff := false // the session drains on after session returns
	defer func() {
		if !handedOff {
			sess.Close()
		}
	}()
	var routes []Route
	for _, i := range idx {
		routes = append(routes, a.cfg.Routes[i])
	}
	ctrl, welcome, err := handshake(ctx, sess, a.cfg.Token, a.cfg.Name, routes)
	if err != nil {
		return err
	}
	defer func() {
		if !handedOff {
			ctrl.Close()
		}
	}()
	live := map[uint32]*liveRoute{}
	var published []string
	for _, acc := range welcome.Accepted {
		for _, i := range idx {
			r := a.cfg.Routes[i]
			if r.Host == acc.Host && normPrefix(r.Prefix) == acc.Prefix {
				addr, _ := ParseService(r.Service)
				live[acc.ID] = &liveRoute{Route: r, addr: addr, guard: a.guards[i]}
				published = append(published, strings.Join(acc.PublicURLs, " ")+" → "+r.Service)
			}
		}
	}
	for _, ref := range welcome.Refused {
		a.log.Error("relay refused route", "host", ref.Host, "prefix", ref.Prefix, "reason", ref.Reason)
	}
	log := a.log.With("session", welcome.SessionID)
	a.setState("connected "+welcome.SessionID, "connected", slog.LevelInfo, "session", welcome.SessionID, "transport", sess.Transport(), "relay", a.cfg.Relay, "routes", published)
	a.mu.Lock()
	if a.replaced != nil {
		close(a.replaced)
		a.replaced = nil
	}
	a.mu.Unlock()
	if !a.stashChecked {
		a.stashChecked = true
		checked := map[string]bool{}
		for _, acc := range welcome.Accepted {
			rt := live[acc.ID]
			if rt != nil && len(acc.PublicURLs) > 0 && rt.guard.isStash() && !checked[rt.Service] {
				checked[rt.Service] = true
				checkStashConfig(a.log, rt.Route, acc.PublicURLs[0])
			}
		}
	}
	if a.OnWelcome != nil {
		a.OnWelcome(welcome)
	}

	sctx, cancel := context.WithCancel(ctx)
	// The control stream's end is the session's end.
	ctrlDone := make(chan struct{})
	var hbErr error
	go func() {
		defer close(ctrlDone)
		hbErr = protocol.KeepAlive(sctx, sess, ctrl, time.Duration(welcome.HeartbeatMillis)*time.Millisecond)
		cancel()
	}()
	var wg sync.WaitGroup // the stream goroutines
	var active atomic.Int64
	served := make(chan error, 1)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			st, err := sess.AcceptStream(sctx)
			if err != nil {
				if ctx.Err() != nil {
					served <- ctx.Err()
					return
				}
				ctrl.Close()
				<-ctrlDone
				if hbErr != nil && !errors.Is(hbErr, context.Canceled) {
					served <- fmt.Errorf("session lost: %w", hbErr)
					return
				}
				served <- fmt.Errorf("session lost: %w", err)
				return
			}
			wg.Add(1)
			active.Add(1)
			go func() {
				defer wg.Done()
				defer active.Add(-1)
				a.serveStream(sctx, log, live, st)
			}()
		}
	}()
	finish := func() {
		ctrl.Close()
		sess.Close()
		<-ctrlDone
		cancel()
		<-acceptDone
		wg.Wait()
	}
	switchTo := a.watchPath(sctx, log, sess, &wg)
	select {
	case err := <-served:
		finish()
		return err
	case <-switchTo:
	}
	// Leave this session for a new one, but let it serve until the new one
	// is up, and finish what it serves.
	handedOff = true
	a.mu.Lock()
	if a.replaced == nil {
		a.replaced = make(chan struct{})
	}
	next := a.replaced
	a.mu.Unlock()
	a.draining.Add(1)
	go func() {
		defer a.draining.Done()
		drain(ctx, &active, served, next)
		finish()
	}()
	return errLossySwitch
}

// drain returns once a session being left is no longer needed: when the
// session replacing it is connected (replaced closed) and it has served its
// streams, or drainFor after that; or as soon as it ends, or ctx does. Until
// its replacement is up it serves on, however long that takes.
func drain(ctx context.Context, active *atomic.Int64, ended <-chan error, replaced <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-ended:
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
		case <-ended:
			return
		case <-t.C:
		}
		if since := time.Since(start); since >= drainFor || (since >= grace && active.Load() == 0) {
			return
		}
	}
}

// watchPath starts watching a QUIC session's packet loss when the agent may
// change transport (auto), and returns a channel closed when it should.
// It returns nil (a channel never ready) when there is nothing to watch.
func (a *Agent) watchPath(ctx context.Context, log *slog.Logger, sess protocol.Session, wg *sync.WaitGroup) <-chan struct{} {
	ps, ok := a.pathStats(sess)
	if !ok || a.cfg.Transport != TransportAuto || a.cfg.LossCheck <= 0 {
		return nil
	}
	a.fallbackOnce.Do(func() {
		a.fallbackCC, a.fallbackErr = a.fallback()
		if a.fallbackErr != nil {
			a.log.Info("not watching QUIC for a lossy path: TCP could not do better here without BBR", "err", a.fallbackErr)
		}
	})
	if a.fallbackErr != nil {
		return nil
	}
	a.mu.Lock()
	off := time.Now().Before(a.noSwitchUntil)
	a.mu.Unlock()
	if off {
		return nil
	}
	ch := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if watchLoss(ctx, log, ps, a.cfg.LossCheck) == errLossySwitch {
			a.mu.Lock()
			a.tcpUntil = time.Now().Add(lossyHold)
			a.mu.Unlock()
			close(ch)
		}
	}()
	return ch
}

// lossyTCP reports whether auto should dial TCP (with cc) because the QUIC
// path proved lossy not long ago.
func (a *Agent) lossyTCP() (cc string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fallbackCC, time.Now().Before(a.tcpUntil)
}

// tcpFailed makes auto go back to QUIC after TCP failed to connect, and stop
// checking QUIC's loss for lossyHold: leaving for a TCP that cannot connect
// would only cost the tunnel again and again.
func (a *Agent) tcpFailed() {
	a.mu.Lock()
	a.tcpUntil = time.Time{}
	a.noSwitchUntil = time.Now().Add(lossyHold)
	a.mu.Unlock()
}

func normPrefix(p string) string {
	if p == "/" {
		return ""
	}
	return p
}

// DryRun asks the relay which routes it would accept and their public URLs,
// without publishing anything (a running agent keeps its routes).
func (a *Agent) DryRun(ctx context.Context) (*protocol.Welcome, error) {
	sess, err := a.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial relay %s: %w", a.cfg.Relay, err)
	}
	defer sess.Close()
	ctrl, w, err := handshake(ctx, sess, a.cfg.Token, a.cfg.Name, a.cfg.Routes, protocol.FeatureDryRun)
	if err != nil {
		return nil, err
	}
	ctrl.Close()
	return w, nil
}

// publishable returns the indices of the routes that may be published now:
// all but a Stash without a login (unless the route allows it).
func (a *Agent) publishable(ctx context.Context) ([]int, error) {
	var out []int
	var errs []error
	for i, g := range a.guards {
		if _, err := g.check(ctx); err != nil {
			if g.warnOnce() {
				a.log.Error("route not published", "host", g.route.Host, "prefix", g.route.Prefix, "reason", err)
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, i)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no route may be published: %w", errors.Join(errs...))
	}
	return out, nil
}

// handshake sends Hello on a new control stream and reads the relay's answer.
func handshake(ctx context.Context, sess protocol.Session, token, name string, routes []Route, features ...string) (protocol.Stream, *protocol.Welcome, error) {
	hctx, cancel := context.WithTimeout(ctx, protocol.HandshakeTimeout)
	defer cancel()
	ctrl, err := sess.OpenStream(hctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open control stream: %w", err)
	}
	_ = ctrl.SetDeadline(time.Now().Add(protocol.HandshakeTimeout))
	hello := protocol.Hello{Version: protocol.Version, Features: features, Token: token, Agent: name}
	for _, r := range routes {
		hello.Routes = append(hello.Routes, protocol.Route{Host: r.Host, Prefix: r.Prefix})
	}
	if err := protocol.WriteMessage(ctrl, protocol.MsgHello, &hello); err != nil {
		ctrl.Close()
		return nil, nil, err
	}
	w, err := protocol.ReadAnswer(ctrl)
	if err != nil {
		ctrl.Close()
		return nil, nil, err
	}
	_ = ctrl.SetDeadline(time.Time{})
	return ctrl, w, nil
}
