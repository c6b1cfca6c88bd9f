package agent

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// routeConfig is the agent's routes and a login guard for each, replaced
// whole by a reload.
type routeConfig struct {
	routes []Route
	guards []*loginGuard // guards[i] is routes[i]'s
}

// newRouteConfig makes the guards of routes, keeping old's guard (and what
// it learnt) for each route that did not change.
func newRouteConfig(routes []Route, old *routeConfig) *routeConfig {
	rc := &routeConfig{routes: routes}
	for _, r := range routes {
		g := newLoginGuard(r)
		if old != nil {
			if i := slices.IndexFunc(old.routes, func(o Route) bool { return sameRoute(o, r) }); i >= 0 {
				g = old.guards[i]
			}
		}
		rc.guards = append(rc.guards, g)
	}
	return rc
}

// askedRoutes is what a session asked the relay to publish: rc.routes[idx].
type askedRoutes struct {
	rc  *routeConfig
	idx []int
}

func (a *askedRoutes) routes() []Route {
	var out []Route
	for _, i := range a.idx {
		out = append(out, a.rc.routes[i])
	}
	return out
}

// match matches the routes the relay accepted to the ones asked for, and
// describes them for the log.
// enforced says whether the relay enforces access policies (FeatureAccess).
func (a *askedRoutes) match(accepted []protocol.AcceptedRoute, enforced bool) (map[uint32]*liveRoute, []string) {
	live := map[uint32]*liveRoute{}
	var published []string
	for _, acc := range accepted {
		for _, i := range a.idx {
			r := a.rc.routes[i]
			if r.Host == acc.Host && normPrefix(r.Prefix) == acc.Prefix {
				addr, _ := ParseService(r.Service)
				live[acc.ID] = &liveRoute{Route: r, addr: addr, guard: a.rc.guards[i], unenforced: r.Access != nil && !enforced}
				published = append(published, strings.Join(acc.PublicURLs, " ")+" → "+r.Service)
			}
		}
	}
	return live, published
}

// routeTable is a session's published routes by the id the relay gave each;
// a route update replaces it whole while streams are served.
type routeTable struct {
	p atomic.Pointer[map[uint32]*liveRoute]
}

func (t *routeTable) set(m map[uint32]*liveRoute) { t.p.Store(&m) }

func (t *routeTable) get(id uint32) *liveRoute {
	if m := t.p.Load(); m != nil {
		return (*m)[id]
	}
	return nil
}

func (t *routeTable) all() map[uint32]*liveRoute {
	if m := t.p.Load(); m != nil {
		return *m
	}
	return nil
}

// reloadCheckTimeout bounds a reload's login checks of the new routes.
const reloadCheckTimeout = 30 * time.Second

// Reload applies a new config to the running agent: its routes are
// published anew over the live sessions (the relay keeps the routes that
// stay, with their streams, and answers with the new set); a route whose
// service changed serves its next stream from the new service. The other
// keys (relay, token, transport, TLS, admin, timeouts) keep their values
// until a restart; Reload logs each such key that changed. An invalid
// config is refused with the error a start would give, and the config in
// force stays.
func (a *Agent) Reload(next Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	if next.Name == "" {
		next.Name, _ = os.Hostname()
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	for _, key := range a.restartKeys(&next) {
		a.log.Warn("config reload: this key changes only at the next restart", "key", key)
	}
	old := a.rc.Load()
	changes := routeChanges(old.routes, next.Routes)
	if len(changes) == 0 {
		a.log.Info("config reloaded", "changed", "no route")
		return nil
	}
	rc := newRouteConfig(next.Routes, old)
	a.rc.Store(rc)
	a.log.Info("config reloaded", "changed", strings.Join(changes, "; "))
	a.askAll(rc, a.liveSessions())
	return nil
}

// askAll asks the relay, on each of sessions, to publish those of rc's
// routes that may be published now.
func (a *Agent) askAll(rc *routeConfig, sessions []*session) {
	ctx, cancel := context.WithTimeout(context.Background(), reloadCheckTimeout)
	defer cancel()
	idx, err := a.publishable(ctx, rc)
	if err != nil {
		a.log.Warn("no route may be published after the reload", "err", err)
	}
	for _, s := range sessions {
		s.ask(&askedRoutes{rc: rc, idx: idx})
	}
}

// restartKeys names the keys of next, other than routes, whose values differ
// from the ones in force.
func (a *Agent) restartKeys(next *Config) []string {
	var keys []string
	if !slices.Equal(a.cfg.relayList(), next.relayList()) {
		keys = append(keys, "relay") // Relay and Relays, untagged: agent.yaml's relay is either
	}
	cur, nv := reflect.ValueOf(a.cfg), reflect.ValueOf(*next)
	for i := range cur.NumField() {
		f := cur.Type().Field(i)
		key := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if key == "-" && f.Name == "Name" {
			key = "name"
		}
		if key == "-" || key == "" {
			continue
		}
		if !reflect.DeepEqual(cur.Field(i).Interface(), nv.Field(i).Interface()) {
			keys = append(keys, key)
		}
	}
	return keys
}

// sameRoute reports whether two routes are configured alike, access policy included.
func sameRoute(a, b Route) bool { return reflect.DeepEqual(a, b) }

// routeChanges describes how routes differ from old.
func routeChanges(old, next []Route) []string {
	key := func(r Route) string { return r.Host + normPrefix(r.Prefix) }
	before := map[string]Route{}
	for _, r := range old {
		before[key(r)] = r
	}
	var changes []string
	for _, r := range next {
		o, ok := before[key(r)]
		delete(before, key(r))
		switch {
		case !ok:
			changes = append(changes, fmt.Sprintf("route %s → %s added", key(r), r.Service))
		case !sameRoute(o, r):
			changes = append(changes, fmt.Sprintf("route %s changed", key(r)))
		}
	}
	for k := range before {
		changes = append(changes, fmt.Sprintf("route %s removed", k))
	}
	slices.Sort(changes)
	return changes
}

// ask asks the relay to publish routes on the live session. A relay that
// takes no route requests gets the routes from a new session instead: the
// agent connects anew while this one finishes its streams.
func (s *session) ask(routes *askedRoutes) {
	if !s.updates {
		s.leaveRelay("the relay takes no route changes on a live session: connecting anew with the new routes")
		return
	}
	seq := s.seq.Add(1)
	s.pending.Store(routes)
	req := &protocol.RouteRequest{Seq: seq, Routes: []protocol.Route{}}
	for _, r := range routes.routes() {
		req.Routes = append(req.Routes, wireRoute(r))
	}
	select {
	case s.out <- protocol.Message{Type: protocol.MsgRoutes, Body: req}:
	default:
		s.leaveRelay("the relay is not reading route requests: connecting anew with the new routes")
	}
}

// handle takes the relay's control messages other than the heartbeat: the
// session's routes, after a route request or a change of the relay's config.
func (s *session) handle(mt protocol.MsgType, body []byte) error {
	if mt != protocol.MsgRouteUpdate {
		return nil // a message of a newer relay: not for this agent
	}
	u, err := protocol.DecodeRouteUpdate(body)
	if err != nil {
		return err
	}
	asked := s.asked.Load()
	if u.Seq != 0 {
		if u.Seq != s.seq.Load() {
			return nil // an answer to an older request: the newest follows
		}
		asked = s.pending.Load()
		s.asked.Store(asked)
	}
	live, published := asked.match(u.Accepted, s.enforces)
	s.a.warnUnenforced(s.log, live)
	s.routes.set(live)
	s.l.noteRefused(u.Refused)
	s.log.Info("routes updated", "routes", published)
	return nil
}
