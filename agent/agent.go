package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
	reloadMu     sync.Mutex  // one reload at a time
	stashChecked atomic.Bool // external_host checked, at the first welcome

	fallbackOnce sync.Once
	fallbackCC   string // congestion control for leaving a lossy path
	fallbackErr  error  // why the agent cannot leave one

	// pathStats gives a session's loss counts, and fallback the congestion
	// control to leave a lossy path with; tests replace them.
	pathStats func(protocol.Session) (protocol.PathStatser, bool)
	fallback  func() (string, error)
	// resolve looks a relay's name up; tests replace it.
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	// For the status and metrics.
	started    time.Time
	live       liveset.Set[*session] // welcomed sessions
	links      liveset.Set[*link]    // one per relay address and connection
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
	}, fallback: lossyFallback, resolve: defaultResolve, started: time.Now()}
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
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch() // before sessions.Wait
	sessions.Go(func() error { a.watchLogins(wctx); return nil })
	if a.cfg.Transport != TransportTCP {
		if advice := transport.UDPBufferAdvice(); advice != "" {
			a.log.Warn("QUIC may be slow: " + advice)
		}
	}
	a.runLinks(ctx, &sessions)
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
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
	targets, _, err := a.targets(ctx)
	if err != nil {
		return nil, err
	}
	l := a.newLink(targets[0], 0)
	sess, err := l.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial relay %s: %w", l.name, err)
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
		if g.loginAppeared() {
			a.log.Info("Stash asks for a login now: publishing the route", "host", g.route.Host, "prefix", g.route.Prefix, "service", g.route.Service)
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
