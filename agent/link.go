package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// An agent keeps connections_per_relay sessions to every relay: each
// address in `relay:`, and each IPv4 address of a name there (each IPv6
// address when it has none), so that several relays behind one DNS name
// each get their sessions. Each such connection is a link, with its own
// backoff, state and lossy-path memory; the names are resolved again every
// relay_refresh, and a relay that leaves DNS loses its links.

// target is one relay address to keep sessions to.
type target struct {
	relay string // as configured: host:port
	addr  string // what to dial: host:port, the host an address when resolved
}

// name is how logs, metrics and the status page call the target.
func (t target) name() string {
	if t.addr == t.relay {
		return t.relay
	}
	return t.relay + "@" + t.addr
}

// targets resolves the configured relays to the addresses to keep sessions
// to; unresolved are the relays whose names did not resolve this time.
func (a *Agent) targets(ctx context.Context) (out []target, unresolved []string, err error) {
	var errs []error
	for _, relay := range a.cfg.relayList() {
		host, port, err := net.SplitHostPort(relay)
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %q: %w", relay, err))
			continue
		}
		if _, err := netip.ParseAddr(host); err == nil {
			out = append(out, target{relay: relay, addr: relay})
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, err := a.resolve(rctx, host)
		cancel()
		if err == nil && len(ips) == 0 {
			err = errors.New("no address")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve relay %s: %w", host, err))
			unresolved = append(unresolved, relay)
			continue
		}
		var v4, v6 []netip.Addr
		for _, ip := range ips {
			if ip.Unmap().Is4() {
				v4 = append(v4, ip.Unmap())
			} else {
				v6 = append(v6, ip)
			}
		}
		if len(v4) == 0 {
			v4 = v6
		}
		slices.SortFunc(v4, netip.Addr.Compare)
		for _, ip := range slices.Compact(v4) {
			out = append(out, target{relay: relay, addr: net.JoinHostPort(ip.String(), port)})
		}
	}
	if len(out) == 0 {
		return nil, unresolved, errors.Join(errs...)
	}
	for _, err := range errs {
		a.log.Warn("relay not resolved; keeping its sessions and those to the others", "err", err)
	}
	return out, unresolved, nil
}

// defaultResolve looks host up in the system's resolver.
func defaultResolve(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// runLinks keeps a link running for every target and connection until ctx
// ends, resolving the relays again every relay_refresh.
func (a *Agent) runLinks(ctx context.Context, sessions *errgroup.Group) {
	type running struct {
		relay  string // as configured
		cancel context.CancelFunc
		done   chan struct{}
	}
	links := map[string]*running{} // by target name and slot
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		for _, r := range links {
			r.cancel()
		}
	}()
	a.log.Info("connecting to relay", "relay", a.cfg.relayList(), "transport", a.cfg.Transport, "connections_per_relay", a.cfg.connections())
	refresh := time.NewTicker(a.cfg.refresh())
	defer refresh.Stop()
	for {
		targets, unresolved, err := a.targets(ctx)
		if err != nil {
			a.log.Warn("no relay address: trying again", "err", err, "retry_in", a.cfg.refresh())
		}
		want := map[string]bool{}
		for _, t := range targets {
			for slot := range a.cfg.connections() {
				key := fmt.Sprintf("%s#%d", t.name(), slot)
				want[key] = true
				if links[key] != nil {
					continue
				}
				if len(links) > 0 {
					a.log.Info("new relay address: connecting to it too", "relay", t.name())
				}
				lctx, cancel := context.WithCancel(ctx)
				r := &running{relay: t.relay, cancel: cancel, done: make(chan struct{})}
				links[key] = r
				l := a.newLink(t, slot)
				wg.Go(func() {
					defer close(r.done)
					defer a.links.Add(l)()
					l.run(lctx, sessions)
				})
			}
		}
		if err == nil {
			for key, r := range links {
				// A name that did not resolve this time (a resolver timing
				// out) has not left DNS: its links stay.
				if !want[key] && !slices.Contains(unresolved, r.relay) {
					a.log.Info("relay address gone from DNS: leaving it", "link", key)
					r.cancel()
					delete(links, key)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
		}
	}
}

// link keeps one session to one relay address, reconnecting with backoff.
type link struct {
	a    *Agent
	t    target
	slot int
	name string
	log  *slog.Logger
	tls  *tls.Config

	mu       sync.Mutex
	state    string    // guarded by mu; the last state logged
	tcpUntil time.Time // guarded by mu; auto dials TCP until then (a lossy QUIC path)
	// noSwitchUntil stops the loss check after TCP failed to connect; guarded by mu.
	noSwitchUntil time.Time
	// replaced is closed when the session after a switch is connected: the
	// session left keeps serving until then; guarded by mu.
	replaced chan struct{}
	refused  map[[2]string]string // guarded by mu: host and prefix → the relay's last reason
}

func (a *Agent) newLink(t target, slot int) *link {
	tc := a.tls.Clone()
	if a.cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(t.relay)
		tc.ServerName = host
	}
	l := &link{a: a, t: t, slot: slot, name: t.name(), tls: tc}
	l.log = a.log
	if len(a.cfg.relayList()) > 1 || t.addr != t.relay || a.cfg.connections() > 1 {
		l.log = a.log.With("relay", l.name)
		if a.cfg.connections() > 1 {
			l.log = l.log.With("connection", slot)
		}
	}
	return l
}

// run connects, serves, and reconnects with backoff until ctx ends.
func (l *link) run(ctx context.Context, sessions *errgroup.Group) {
	b := newBackoff()
	for {
		start := time.Now()
		had, err := l.serve(ctx, sessions)
		if ctx.Err() != nil {
			l.setState("stopped", "agent stopped", slog.LevelInfo)
			return
		}
		if errors.Is(err, errLossySwitch) {
			b.reset()
			continue
		}
		if time.Since(start) > stableAfter {
			b.reset()
		}
		d := b.next()
		var unreachable *unreachableError
		if errors.As(err, &unreachable) {
			d = b.nextWithin(unreachableCap)
		}
		if errors.As(err, new(errNoLogin)) {
			d = min(d, loginRecheck) // a login set at home is noticed soon
		}
		if had {
			l.a.reconnects.Inc() // a session was lost, not a dial that failed
		}
		var rj *protocol.RejectError
		switch {
		case errors.As(err, &rj):
			l.setState("refused: "+rj.Error(), "relay refused the agent", slog.LevelError, "code", rj.Reject.Code, "reason", rj.Reject.Message, "retry_in", d.Round(time.Millisecond))
		default:
			l.setState("disconnected: "+errString(err), "not connected", slog.LevelWarn, "err", err, "retry_in", d.Round(time.Millisecond))
		}
		if wait(ctx, d) != nil {
			l.setState("stopped", "agent stopped", slog.LevelInfo)
			return
		}
	}
}

// serve connects and runs one session until it ends, or until the link
// leaves it for a new one (errLossySwitch): it then runs on in sessions,
// serving the streams it has. had says whether a session was welcomed.
func (l *link) serve(ctx context.Context, sessions *errgroup.Group) (had bool, err error) {
	a := l.a
	s, err := l.connect(ctx)
	if err != nil {
		return false, err
	}
	ended := make(chan error, 1)
	sessions.Go(func() error {
		defer a.live.Add(s)()
		ended <- s.run(ctx)
		return nil
	})
	if rc := a.rc.Load(); rc != s.asked.Load().rc {
		// A reload ran while the session was welcomed; it did not see it.
		// Beside the session, whose heartbeat must not wait on the login
		// checks the reload may be running.
		sessions.Go(func() error {
			a.reloadMu.Lock()
			defer a.reloadMu.Unlock()
			a.askAll(a.rc.Load(), []*session{s})
			return nil
		})
	}
	select {
	case err := <-ended:
		return true, err
	case <-s.left:
		return true, errLossySwitch
	}
}

// setState logs msg when key differs from the last state; a repeat of the
// same state (the same error on every retry) goes to debug.
func (l *link) setState(key, msg string, level slog.Level, args ...any) {
	l.mu.Lock()
	same := l.state == key
	l.state = key
	l.mu.Unlock()
	if same {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, msg, args...)
}

// connect dials the relay, says hello and returns the session the relay
// welcomed, ready to run.
func (l *link) connect(ctx context.Context) (*session, error) {
	// Login checks first: they may take seconds, and the relay gives a new
	// session only HandshakeTimeout to say hello.
	rc := l.a.rc.Load()
	idx, err := l.a.publishable(ctx, rc)
	if err != nil {
		return nil, err
	}
	sess, err := l.dial(ctx)
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("dial relay %s: %w", l.name, err)}
	}
	s, err := l.hello(ctx, sess, rc, idx)
	if err != nil {
		sess.Close()
		return nil, err
	}
	return s, nil
}

// hello publishes the routes rc.routes[idx] on sess; once the relay has
// welcomed them, the session it returns is connected.
func (l *link) hello(ctx context.Context, sess protocol.Session, rc *routeConfig, idx []int) (*session, error) {
	a := l.a
	ask := &askedRoutes{rc: rc, idx: idx}
	ctrl, welcome, err := handshake(ctx, sess, a.cfg.Token, a.cfg.Name, ask.routes(), protocol.FeatureRouteUpdates, protocol.FeatureAccess)
	if err != nil {
		return nil, err
	}
	enforces := slices.Contains(welcome.Features, protocol.FeatureAccess)
	live, published := ask.match(welcome.Accepted, enforces)
	a.warnUnenforced(l.log, live)
	l.noteRefused(welcome.Refused)
	l.setState("connected "+welcome.SessionID, "connected", slog.LevelInfo, "session", welcome.SessionID, "transport", sess.Transport(), "relay", l.name, "routes", published)
	l.markReplaced()
	if a.stashChecked.CompareAndSwap(false, true) {
		a.checkStash(welcome, live)
	}
	if a.OnWelcome != nil {
		a.OnWelcome(welcome)
	}
	s := &session{
		a:            a,
		l:            l,
		log:          l.log.With("session", welcome.SessionID),
		id:           welcome.SessionID,
		since:        time.Now(),
		sess:         sess,
		ctrl:         ctrl,
		heartbeat:    time.Duration(welcome.HeartbeatMillis) * time.Millisecond,
		updates:      slices.Contains(welcome.Features, protocol.FeatureRouteUpdates),
		enforces:     enforces,
		out:          make(chan protocol.Message, 1),
		sched:        newScheduler(l.log.With("session", welcome.SessionID), pathDelayer(sess)),
		left:         make(chan struct{}),
		relayLeaving: make(chan struct{}),
		goAway:       make(chan string, 1),
	}
	s.routes.set(live)
	s.asked.Store(ask)
	return s, nil
}

// noteRefused logs the routes the relay refused and keeps the reasons for
// the status.
func (l *link) noteRefused(refusals []protocol.RefusedRoute) {
	refused := map[[2]string]string{}
	for _, ref := range refusals {
		l.log.Error("relay refused route", "host", ref.Host, "prefix", ref.Prefix, "reason", ref.Reason)
		refused[[2]string{ref.Host, normPrefix(ref.Prefix)}] = "the relay refused it: " + ref.Reason
	}
	l.mu.Lock()
	l.refused = refused
	l.mu.Unlock()
}

// dial opens a session to the link's relay with the configured transport. A
// certificate the agent refuses is explained (RelayCertError).
func (l *link) dial(ctx context.Context) (protocol.Session, error) {
	s, err := l.dialTransport(ctx)
	if err != nil {
		return nil, explainCertError(err, l.tls.ServerName)
	}
	return s, nil
}

func (l *link) dialTransport(ctx context.Context) (protocol.Session, error) {
	addr := l.t.addr
	switch l.a.cfg.Transport {
	case TransportQUIC:
		ctx, cancel := context.WithTimeout(ctx, quicDialTimeout)
		defer cancel()
		return transport.DialQUIC(ctx, addr, l.tls)
	case TransportTCP:
		return transport.DialTCP(ctx, addr, l.tls)
	}
	if cc, ok := l.lossyTCP(); ok {
		tctx, cancel := context.WithTimeout(ctx, lossyDialTimeout)
		s, err := transport.DialTCPCongestion(tctx, addr, l.tls, cc)
		cancel()
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		l.log.Warn("TCP to the relay failed; staying on QUIC despite its loss", "err", err, "check_again_after", lossyHold)
		l.tcpFailed()
	}
	qctx, cancel := context.WithTimeout(ctx, quicFallbackAfter)
	s, qerr := transport.DialQUIC(qctx, addr, l.tls)
	cancel()
	if qerr == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if isCertError(qerr) {
		return nil, qerr // TCP would be shown the same certificate
	}
	s, terr := transport.DialTCP(ctx, addr, l.tls)
	if terr != nil {
		return nil, fmt.Errorf("quic: %w; tcp: %w", qerr, terr)
	}
	return s, nil
}

// lossyTCP reports whether auto should dial TCP (with cc) because the QUIC
// path proved lossy not long ago.
func (l *link) lossyTCP() (cc string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.a.fallbackCC, time.Now().Before(l.tcpUntil)
}

// tcpFailed makes auto go back to QUIC after TCP failed to connect, and stop
// checking QUIC's loss for lossyHold: leaving for a TCP that cannot connect
// would only cost the tunnel again and again.
func (l *link) tcpFailed() {
	l.mu.Lock()
	l.tcpUntil = time.Time{}
	l.noSwitchUntil = time.Now().Add(lossyHold)
	l.mu.Unlock()
}

// holdTCP has auto dial TCP for lossyHold: the QUIC path proved lossy.
func (l *link) holdTCP() {
	l.mu.Lock()
	l.tcpUntil = time.Now().Add(lossyHold)
	l.mu.Unlock()
}

// replacement returns a channel closed when the link's next session is
// connected.
func (l *link) replacement() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.replaced == nil {
		l.replaced = make(chan struct{})
	}
	return l.replaced
}

// markReplaced tells a session being left that its replacement is connected.
func (l *link) markReplaced() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.replaced != nil {
		close(l.replaced)
		l.replaced = nil
	}
}

// lossWatch returns a QUIC session's loss counts to watch when the agent may
// change transport (auto); ok is false when there is nothing to watch.
func (l *link) lossWatch(sess protocol.Session) (ps protocol.PathStatser, ok bool) {
	a := l.a
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
	l.mu.Lock()
	off := time.Now().Before(l.noSwitchUntil)
	l.mu.Unlock()
	return ps, !off
}

// unreachableError is a failure to reach the relay at all.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// warnUnenforced logs each route whose access policy the relay ignores:
// the agent serves none of its streams.
func (a *Agent) warnUnenforced(log *slog.Logger, live map[uint32]*liveRoute) {
	for _, rt := range live {
		if rt.unenforced {
			log.Error("route not served: the relay does not enforce access policies; upgrade the relay", "host", rt.Host, "prefix", rt.Prefix)
		}
	}
}
