package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/internal/liveset"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
	"github.com/prometheus/client_golang/prometheus"
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

	// rc is the routes in force: cfg.Routes at start, then a reload's.
	rc           atomic.Pointer[routeConfig]
	reloadMu     sync.Mutex // one reload at a time
	stashChecked bool       // external_host checked; touched by Run's goroutine only

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

	// pathStats gives a session's loss counts, and fallback the congestion
	// control to leave a lossy path with; tests replace them.
	pathStats func(protocol.Session) (protocol.PathStatser, bool)
	fallback  func() (string, error)

	// For the status and metrics.
	started    time.Time
	live       liveset.Set[*session] // welcomed sessions
	refused    map[[2]string]string  // guarded by mu: host and prefix → the relay's last reason
	reconnects prometheus.Counter
	metrics    *prometheus.Registry
	recent     admin.Recent // the last warnings and errors, for the status page
}

type liveRoute struct {
	Route
	addr  string // host:port to dial
	guard *loginGuard
	// unenforced: the route has an access policy and the relay of its
	// session does not enforce policies, so none of its streams is served.
	unenforced bool
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
	a := &Agent{cfg: cfg, tls: tc, pathStats: func(s protocol.Session) (protocol.PathStatser, bool) {
		ps, ok := s.(protocol.PathStatser)
		return ps, ok
	}, fallback: lossyFallback, started: time.Now()}
	a.log = slog.New(a.recent.Handler(log.Handler()))
	a.metrics = a.newMetrics()
	a.rc.Store(newRouteConfig(cfg.Routes, nil))
	return a, nil
}

// Run connects, serves, and reconnects with backoff until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	// Sessions run in their own goroutines: the one serving, and any the
	// agent left for it that are serving their last streams.
	var sessions errgroup.Group
	defer sessions.Wait()
	if a.cfg.Admin.Listen != "" {
		adm, err := admin.Listen(admin.Options{Listen: a.cfg.Admin.Listen, Pprof: a.cfg.Admin.Pprof,
			Gatherer: a.metrics, Status: a.Status, Page: StatusPage, Log: a.log})
		if err != nil {
			// A second agent beside the first (a replica) finds the port taken:
			// it serves all the same, without an admin listener.
			a.log.Warn("no admin listener", "err", err)
		} else {
			a.log.Info("admin listener", "addr", adm.Addr().String())
			actx, cancel := context.WithCancel(ctx)
			defer cancel()
			sessions.Go(func() error { return adm.Run(actx) })
		}
	}
	b := newBackoff()
	a.log.Info("connecting to relay", "relay", a.cfg.Relay, "transport", a.cfg.Transport)
	if a.cfg.Transport != TransportTCP {
		if advice := transport.UDPBufferAdvice(); advice != "" {
			a.log.Warn("QUIC may be slow: " + advice)
		}
	}
	for {
		start := time.Now()
		err := a.serve(ctx, &sessions)
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
		a.reconnects.Inc()
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

// serve connects and runs one session until it ends, or until the agent
// leaves it for a new one (errLossySwitch): it then runs on in sessions,
// serving the streams it has.
func (a *Agent) serve(ctx context.Context, sessions *errgroup.Group) error {
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	ended := make(chan error, 1)
	sessions.Go(func() error {
		defer a.live.Add(s)()
		if rc := a.rc.Load(); rc != s.asked.Load().rc {
			// A reload ran while the session was welcomed; it did not see it.
			a.reloadMu.Lock()
			a.askAll(rc, []*session{s})
			a.reloadMu.Unlock()
		}
		ended <- s.run(ctx)
		return nil
	})
	select {
	case err := <-ended:
		return err
	case <-s.left:
		return errLossySwitch
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
	ctrl, w, err := handshake(ctx, sess, a.cfg.Token, a.cfg.Name, a.rc.Load().routes, protocol.FeatureDryRun)
	if err != nil {
		return nil, err
	}
	ctrl.Close()
	return w, nil
}

// publishable returns the indices of rc's routes that may be published now:
// all but a Stash without a login (unless the route allows it).
func (a *Agent) publishable(ctx context.Context, rc *routeConfig) ([]int, error) {
	var out []int
	var errs []error
	for i, g := range rc.guards {
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
	defer protocol.GuardHandshake(ctx, ctrl)()
	hello := protocol.Hello{Version: protocol.Version, Features: features, Token: token, Agent: name}
	for _, r := range routes {
		hello.Routes = append(hello.Routes, wireRoute(r))
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
	return ctrl, w, nil
}
