package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/burrow-tunnel/burrow/internal/access"
	"github.com/burrow-tunnel/burrow/protocol"
)

// tunnelSession is one agent's session, from its welcome until it ends: the
// accept path (handshake) authenticates the agent and publishes its routes,
// run keeps them published while the session lives.
type tunnelSession struct {
	srv    *Server
	log    *slog.Logger
	agent  string
	id     string      // the session id both sides log
	since  time.Time   // welcomed at
	goAway chan string // a reason here tells the agent the relay is going away
	sess   protocol.Session
	ctrl   protocol.Stream // the control stream; its end is the session's
	// token is the token_sha256 the agent authenticated with.
	token [sha256.Size]byte
	// streams counts the session's open streams, shared by its routes.
	streams *atomic.Int64
	// updates: the agent takes route updates on the live session.
	updates  bool
	requests *rate.Limiter         // the agent's route requests
	out      chan protocol.Message // route updates to send
	gen      uint64                // the config generation its routes were published under

	mu        sync.Mutex
	routes    []*route         // guarded by mu; published for this session
	requested []protocol.Route // guarded by mu; what the agent asks for
	leaving   bool             // guarded by mu; the session is ending, or its agent going away
	dirty     bool             // guarded by mu; routes changed since the agent was told
}

// serveSession runs one agent session: the handshake on its control stream,
// then the published routes until the session or ctx ends.
func (s *Server) serveSession(ctx context.Context, sess protocol.Session) {
	defer sess.Close()
	log := s.log.With("remote", sess.RemoteAddr().String(), "transport", sess.Transport())
	ts := s.handshake(ctx, sess, log)
	if ts == nil {
		return
	}
	live := s.metrics.sessions.WithLabelValues(ts.agent, sess.Transport())
	live.Inc()
	defer live.Dec()
	defer s.live.Add(ts)()
	if s.draining != nil && s.draining.Err() != nil {
		// Welcomed as the relay began to stop: drain may not have seen it.
		ts.goingAway("relay shutting down")
	}
	if ts.gen != s.gen.Load() && !s.catchUp(ts) {
		return
	}
	if err := ts.run(ctx); err != nil {
		ts.log.Info("agent session ended", "reason", err)
	}
	ts.log.Info("agent disconnected")
}

// goingAway tells the agent that the relay is going away. It never blocks:
// drain and a session welcomed as drain began may both say it, and the
// first one said is enough.
func (t *tunnelSession) goingAway(reason string) {
	select {
	case t.goAway <- reason:
	default:
	}
}

// catchUp applies to a session the reloads that ran while it was welcomed,
// which did not see it; it reports whether the session goes on. One that
// authenticated under a grant a reload removed, or whose token it changed,
// ends.
func (s *Server) catchUp(ts *tunnelSession) bool {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if reason := ts.revoked(); reason != "" {
		ts.end(reason)
		return false
	}
	ts.dropUnwanted()
	ts.reconcile(0)
	return true
}

// authenticatedSession is a session whose transport holds back the buffers
// sized for throughput until it is told that the agent is authenticated
// (TLS+yamux: its socket reads and stream buffers).
type authenticatedSession interface {
	Authenticated()
}

// run keeps the session's heartbeat until the heartbeat fails, the session
// ends or ctx does; it then closes the session, unpublishes its routes, and
// returns why the heartbeat ended (nil when ctx did).
func (t *tunnelSession) run(ctx context.Context) error {
	defer t.leave() // once the session is closed and its heartbeat over
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	g.Go(func() error {
		defer cancel() // the control stream's end is the session's end
		return protocol.KeepAlive(ctx, t.sess, t.ctrl, protocol.HeartbeatPeriod, protocol.Control{
			GoAway: t.goAway,
			GoingAway: func(reason string) {
				// The agent is stopping: new requests go to its replicas (or
				// get the agent-offline page); its streams finish here.
				t.log.Info("agent going away", "reason", reason)
				t.leave()
			},
			Out:    t.out,
			Handle: t.handle,
		})
	})
	select {
	case <-ctx.Done():
	case <-t.sess.Done():
	}
	t.ctrl.Close()
	t.sess.Close()
	return g.Wait()
}

// dropIdle closes the idle pooled streams of the session's routes: each
// holds a connection to a service at the agent's end.
func (t *tunnelSession) dropIdle(routes []*route) {
	if t.srv.transport == nil {
		return
	}
	var hosts []string
	for _, rt := range routes {
		hosts = append(hosts, routeHost(rt))
	}
	t.srv.transport.closeIdle(hosts...)
}

// published is a copy of the session's routes.
func (t *tunnelSession) published() []*route {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.routes)
}

// leave unpublishes the session's routes for good: no reload or route
// request publishes any on it again.
func (t *tunnelSession) leave() {
	t.mu.Lock()
	t.leaving = true
	t.mu.Unlock()
	t.unpublish()
}

// unpublish removes the session's routes; other sessions serving the same
// routes (replicas) keep serving them.
func (t *tunnelSession) unpublish() {
	routes := t.published()
	t.srv.reg.remove(routes)
	t.dropIdle(routes)
	for _, rt := range routes {
		if n := t.srv.reg.replicas(rt.host, rt.prefix); n > 0 {
			t.log.Info("route still served by other sessions", "host", rt.host, "prefix", rt.prefix, "sessions", n)
		}
	}
}

// handshake reads the agent's hello on the session's first stream,
// authenticates the agent and publishes its routes. It returns the session
// welcomed, or nil when the session ends here: refused, a dry run, or failed.
func (s *Server) handshake(ctx context.Context, sess protocol.Session, log *slog.Logger) *tunnelSession {
	hctx, cancel := context.WithTimeout(ctx, protocol.HandshakeTimeout)
	ctrl, err := sess.AcceptStream(hctx)
	cancel()
	if err != nil {
		log.Debug("agent sent no control stream", "err", err)
		return nil
	}
	defer protocol.GuardHandshake(ctx, ctrl)()
	// Before authenticating: a reload from here on is caught up with (catchUp).
	gen := s.gen.Load()
	hello, grant := s.readHello(ctrl, sess, log)
	if grant == nil {
		ctrl.Close()
		return nil
	}
	if as, ok := sess.(authenticatedSession); ok {
		as.Authenticated()
	}
	sessionID := newSessionID()
	log = log.With("agent", grant.Name, "session", sessionID)
	streams := new(atomic.Int64) // the session's open streams, for picking among replicas
	routes, welcome := s.publish(grant, sess, streams, hello, log)
	welcome.SessionID = sessionID
	if !s.answer(ctrl, routes, welcome, log) {
		s.reg.remove(routes)
		ctrl.Close()
		return nil
	}
	var hosts []string
	for _, a := range welcome.Accepted {
		hosts = append(hosts, a.Host+a.Prefix)
	}
	log.Info("agent connected", "routes", hosts)
	return &tunnelSession{
		srv: s, log: log, agent: grant.Name, id: sessionID, since: time.Now(),
		goAway: make(chan string, 1), sess: sess, ctrl: ctrl, token: grant.TokenSHA256, streams: streams,
		updates:  slices.Contains(welcome.Features, protocol.FeatureRouteUpdates),
		requests: rate.NewLimiter(routeRequestRate, routeRequestBurst),
		out:      make(chan protocol.Message, 4),
		gen:      gen,
		routes:   routes, requested: hello.Routes,
	}
}

// readHello reads the agent's hello and authenticates it; a nil grant means
// the agent was refused (and told why). A peer can fail here as often as it
// likes: the relay logs the first failure from an address at once, and sums
// up the rest (see logRefused).
func (s *Server) readHello(ctrl protocol.Stream, sess protocol.Session, log *slog.Logger) (*protocol.Hello, *AgentGrant) {
	hello, err := protocol.ReadHello(ctrl)
	if err != nil {
		s.logRefused(log, sess, slog.LevelInfo, "agent handshake failed", "err", err)
		s.reject(ctrl, protocol.RejectBadHello, "could not read hello: "+err.Error())
		return nil, nil
	}
	if hello.Version != protocol.Version {
		s.logRefused(log, sess, slog.LevelWarn, "agent speaks another protocol version", "agent_version", hello.Version, "relay_version", protocol.Version)
		s.reject(ctrl, protocol.RejectVersion, fmt.Sprintf("relay speaks protocol version %d, agent sent %d: upgrade the older side", protocol.Version, hello.Version))
		return nil, nil
	}
	if len(hello.Routes) > protocol.MaxRoutes {
		s.logRefused(log, sess, slog.LevelWarn, "agent asks for too many routes", "routes", len(hello.Routes), "max", protocol.MaxRoutes)
		s.reject(ctrl, protocol.RejectBadHello, fmt.Sprintf("hello asks for %d routes; a session may have at most %d", len(hello.Routes), protocol.MaxRoutes))
		return nil, nil
	}
	grant := s.authenticate(hello.Token)
	if grant == nil {
		s.metrics.refusals.WithLabelValues(refusedBadToken).Inc()
		const reason = "invalid token: it matches no agents[].token_sha256 in the relay's config"
		s.logRefused(log, sess, slog.LevelWarn, "agent refused: invalid token", "agent_name", truncate(hello.Agent, 64), "reason", reason)
		s.reject(ctrl, protocol.RejectBadToken, reason)
		return nil, nil
	}
	return hello, grant
}

// logRefused logs a failed handshake through the tunnel listener, which
// writes the first line of an address at once and sums up its repeats once a
// minute.
func (s *Server) logRefused(log *slog.Logger, sess protocol.Session, level slog.Level, msg string, args ...any) {
	if s.tunnel == nil { // a session served without a listener, in tests
		log.Log(context.Background(), level, msg, args...)
		return
	}
	args = append(args, "remote", sess.RemoteAddr().String(), "transport", sess.Transport())
	s.tunnel.LogRefused(sess.RemoteAddr(), level, msg, args...)
}

// truncate cuts s to at most n bytes, marking the cut: a peer's strings go
// into the log.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// publish publishes the routes the agent asks for and may have (a dry run
// only checks them), and returns them with the welcome that lists them.
func (s *Server) publish(grant *AgentGrant, sess protocol.Session, streams *atomic.Int64, hello *protocol.Hello, log *slog.Logger) ([]*route, *protocol.Welcome) {
	var routes []*route
	welcome := &protocol.Welcome{
		Version:         protocol.Version,
		Agent:           grant.Name,
		HeartbeatMillis: protocol.HeartbeatPeriod.Milliseconds(),
	}
	dryRun := slices.Contains(hello.Features, protocol.FeatureDryRun)
	if dryRun {
		welcome.Features = []string{protocol.FeatureDryRun}
	} else if slices.Contains(hello.Features, protocol.FeatureRouteUpdates) {
		welcome.Features = []string{protocol.FeatureRouteUpdates}
	}
	if slices.Contains(hello.Features, protocol.FeatureAccess) {
		welcome.Features = append(welcome.Features, protocol.FeatureAccess)
	}
	for _, want := range hello.Routes {
		host, prefix, reason := s.checkRoute(grant, want)
		var guard *access.Guard
		if reason == "" {
			guard, reason = s.guardFor(host, prefix, want.Access)
		}
		if reason == "" && dryRun {
			owner := s.reg.owner(host, prefix)
			if owner == "" || owner == grant.Name {
				welcome.Accepted = append(welcome.Accepted, protocol.AcceptedRoute{Host: host, Prefix: prefix, PublicURLs: s.publicURLs(host, prefix)})
				continue
			}
			reason = fmt.Sprintf("already served by agent %q", owner)
		} else if reason == "" {
			rt, replicas, owner, ok := s.reg.add(grant.Name, sess, streams, host, prefix, guard)
			if ok {
				if replicas > 1 {
					log.Info("route served by several sessions", "host", host, "prefix", prefix, "sessions", replicas)
				}
				routes = append(routes, rt)
				welcome.Accepted = append(welcome.Accepted, protocol.AcceptedRoute{
					ID: rt.id, Host: host, Prefix: prefix, PublicURLs: s.publicURLs(host, prefix),
				})
				continue
			}
			reason = fmt.Sprintf("already served by agent %q", owner)
		}
		s.metrics.refusals.WithLabelValues(refusedHost).Inc()
		welcome.Refused = append(welcome.Refused, protocol.RefusedRoute{Host: want.Host, Prefix: want.Prefix, Reason: reason})
		log.Warn("route refused", "host", want.Host, "prefix", want.Prefix, "reason", reason)
	}
	return routes, welcome
}

// answer answers the hello: the welcome, or a refusal when no route was
// published. It reports whether the session goes on (not after a dry run).
func (s *Server) answer(ctrl protocol.Stream, routes []*route, welcome *protocol.Welcome, log *slog.Logger) bool {
	if slices.Contains(welcome.Features, protocol.FeatureDryRun) {
		if err := protocol.WriteMessage(ctrl, protocol.MsgWelcome, welcome); err != nil {
			log.Debug("dry-run answer failed", "err", err)
		}
		linger(ctrl)
		return false
	}
	if len(routes) == 0 {
		var reasons []string
		for _, r := range welcome.Refused {
			reasons = append(reasons, r.Host+r.Prefix+": "+r.Reason)
		}
		s.reject(ctrl, protocol.RejectNoRoutes, "no route accepted: "+strings.Join(reasons, "; "))
		return false
	}
	if err := protocol.WriteMessage(ctrl, protocol.MsgWelcome, welcome); err != nil {
		log.Info("agent handshake failed", "err", err)
		return false
	}
	return true
}

func (s *Server) reject(ctrl protocol.Stream, code, msg string) {
	_ = protocol.WriteMessage(ctrl, protocol.MsgReject, &protocol.Reject{Code: code, Message: msg, Version: protocol.Version})
	linger(ctrl)
}

// linger ends the relay's side of a control stream and waits (briefly) for
// the agent to close: closing the session at once could discard the last
// answer before the agent reads it (QUIC drops unacknowledged data, and
// yamux can fail the agent's last write).
func linger(ctrl protocol.Stream) {
	_ = ctrl.CloseWrite()
	_ = ctrl.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(ctrl, 64<<10))
}

// authenticate compares the token's hash with every grant in constant time.
func (s *Server) authenticate(token string) *AgentGrant {
	sum := sha256.Sum256([]byte(token))
	var found *AgentGrant
	agents := s.current().Agents
	for i := range agents {
		g := &agents[i]
		if subtle.ConstantTimeCompare(sum[:], g.TokenSHA256[:]) == 1 && token != "" {
			found = g
		}
	}
	return found
}

// checkRoute normalises a requested route and says why it is refused, if it is.
// A name granted exactly to one agent is never served by another through a
// wildcard grant, whichever connects first.
func (s *Server) checkRoute(g *AgentGrant, r protocol.Route) (host, prefix, reason string) {
	host = strings.ToLower(strings.TrimSuffix(r.Host, "."))
	if err := ValidHost(host); err != nil {
		return "", "", err.Error()
	}
	if !g.Allows(host) {
		return "", "", fmt.Sprintf("host %q is not granted to agent %q (relay config agents[].hosts)", host, g.Name)
	}
	if owner := s.exactOwner(host); owner != "" && owner != g.Name {
		return "", "", fmt.Sprintf("host %q is granted by name to agent %q", host, owner)
	}
	prefix, err := CleanPrefix(r.Prefix)
	if err != nil {
		return "", "", err.Error()
	}
	return host, prefix, ""
}

// exactOwner is the agent granted host by its exact name, or "".
func (s *Server) exactOwner(host string) string {
	for _, g := range s.current().Agents {
		if slices.Contains(g.Hosts, host) {
			return g.Name
		}
	}
	return ""
}

// CleanPrefix normalises a route prefix: "" or "/a/b" without a trailing slash.
func CleanPrefix(p string) (string, error) {
	if p == "" || p == "/" {
		return "", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("prefix %q must start with /", p)
	}
	if strings.ContainsAny(p, "?#%") {
		return "", fmt.Errorf("prefix %q must be a plain path", p)
	}
	c := path.Clean(p)
	if c != strings.TrimSuffix(p, "/") {
		return "", fmt.Errorf("prefix %q is not a clean path (want %q)", p, c)
	}
	return c, nil
}

func newSessionID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var errAgentOffline = errors.New("relay: the home agent for this route is not connected")
