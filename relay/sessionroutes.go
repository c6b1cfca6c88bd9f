package relay

import (
	"fmt"
	"slices"

	"github.com/burrow-tunnel/burrow/internal/access"
	"github.com/burrow-tunnel/burrow/protocol"
)

// A live session's routes change when the relay's config is reloaded (a
// grant gains or loses a host) or when the agent reloads its own and asks
// for another set (MsgRoutes). Either way the relay publishes what the
// agent asks for and may have, unpublishes the rest, and tells the agent
// (MsgRouteUpdate). Changes run under Server.reloadMu, one at a time.

// An agent's route requests follow its reloads and its services' logins: a
// burst of them passes, and then one a second; more end the session.
const (
	routeRequestRate  = 1
	routeRequestBurst = 10
)

// grantNamed is the grant of the agent called name in the config in force, or nil.
func (s *Server) grantNamed(name string) *AgentGrant {
	agents := s.current().Agents
	for i := range agents {
		if agents[i].Name == name {
			return &agents[i]
		}
	}
	return nil
}

// revoked says why the session may no longer live, or "": its agent was
// removed from the config in force, or authenticated with a token it no
// longer has.
func (t *tunnelSession) revoked() string {
	g := t.srv.grantNamed(t.agent)
	switch {
	case g == nil:
		return "it was removed from the relay's config"
	case g.TokenSHA256 != t.token:
		return "its token_sha256 changed in the relay's config"
	}
	return ""
}

// end ends the session: its agent's grant is gone or changed.
func (t *tunnelSession) end(reason string) {
	t.log.Warn("ending agent session", "reason", reason)
	t.leave()
	t.sess.Close()
}

// dropUnwanted unpublishes the routes the agent no longer asks for or may no
// longer have.
func (t *tunnelSession) dropUnwanted() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.leaving {
		return
	}
	g := t.srv.grantNamed(t.agent)
	var wanted map[[2]string]bool
	if g != nil {
		wanted = t.wantedLocked(g)
	}
	var keep, gone []*route
	for _, rt := range t.routes {
		reason := ""
		switch {
		case g == nil:
			reason = "the agent is no longer in the relay's config"
		case !wanted[[2]string{rt.host, rt.prefix}]:
			reason = "the agent no longer asks for it"
			if _, _, why := t.srv.checkRoute(g, protocol.Route{Host: rt.host, Prefix: rt.prefix}); why != "" {
				reason = why
			}
		}
		if reason == "" {
			keep = append(keep, rt)
			continue
		}
		gone = append(gone, rt)
		t.log.Info("route unpublished", "host", rt.host, "prefix", rt.prefix, "reason", reason)
	}
	if len(gone) == 0 {
		return
	}
	t.srv.reg.remove(gone)
	t.dropIdle(gone)
	t.routes, t.dirty = keep, true
}

// wantedLocked is the set of routes, host and prefix normalised, that the
// agent asks for and g lets it have; t.mu is held. Built once, it keeps a
// change linear in the routes asked for and published: an agent may ask
// for as many as a control message holds, as often as it likes.
func (t *tunnelSession) wantedLocked(g *AgentGrant) map[[2]string]bool {
	wanted := make(map[[2]string]bool, len(t.requested))
	for _, want := range t.requested {
		if h, p, reason := t.srv.checkRoute(g, want); reason == "" {
			wanted[[2]string{h, p}] = true
		}
	}
	return wanted
}

// reconcile publishes what the agent asks for and may have and is not yet
// published, and tells the agent when its routes changed, or when seq (an
// agent's request) asks for an answer. An agent that cannot take route
// updates is disconnected instead: it connects anew with its routes.
func (t *tunnelSession) reconcile(seq uint64) {
	t.mu.Lock()
	if t.leaving {
		t.mu.Unlock()
		return
	}
	g := t.srv.grantNamed(t.agent)
	if g == nil {
		t.mu.Unlock()
		return
	}
	published := make(map[[2]string]bool, len(t.routes))
	for _, rt := range t.routes {
		published[[2]string{rt.host, rt.prefix}] = true
	}
	var refused []protocol.RefusedRoute
	for _, want := range t.requested {
		host, prefix, reason := t.srv.checkRoute(g, want)
		var guard *access.Guard
		if reason == "" {
			guard, reason = t.srv.guardFor(host, prefix, want.Access)
		}
		if published[[2]string{host, prefix}] {
			i := slices.IndexFunc(t.routes, func(rt *route) bool { return rt.host == host && rt.prefix == prefix })
			if reason == "" {
				// Kept, with its streams; its policy may have changed.
				t.routes[i].access.Store(guard)
				continue
			}
			// Its new policy is refused: the old one must not stay in force.
			t.srv.reg.remove(t.routes[i : i+1])
			t.dropIdle(t.routes[i : i+1])
			t.routes, t.dirty = slices.Delete(t.routes, i, i+1), true
			delete(published, [2]string{host, prefix})
		}
		if reason == "" {
			rt, _, owner, ok := t.srv.reg.add(t.agent, t.sess, t.streams, host, prefix, guard)
			if ok {
				published[[2]string{host, prefix}] = true
				t.routes, t.dirty = append(t.routes, rt), true
				t.log.Info("route published", "host", host, "prefix", prefix)
				continue
			}
			reason = fmt.Sprintf("already served by agent %q", owner)
		}
		if seq != 0 {
			t.srv.metrics.refusals.WithLabelValues(refusedHost).Inc()
			t.log.Warn("route refused", "host", want.Host, "prefix", want.Prefix, "reason", reason)
		}
		refused = append(refused, protocol.RefusedRoute{Host: want.Host, Prefix: want.Prefix, Reason: reason})
	}
	if !t.dirty && seq == 0 {
		t.mu.Unlock()
		return
	}
	t.dirty = false
	update := &protocol.RouteUpdate{Seq: seq, Refused: refused}
	for _, rt := range t.routes {
		update.Accepted = append(update.Accepted, protocol.AcceptedRoute{
			ID: rt.id, Host: rt.host, Prefix: rt.prefix, PublicURLs: t.srv.publicURLs(rt.host, rt.prefix)})
	}
	t.mu.Unlock()
	if !t.updates {
		t.end("its routes changed, and its agent takes no route updates on a live session: it connects anew")
		return
	}
	select {
	case t.out <- protocol.Message{Type: protocol.MsgRouteUpdate, Body: update}:
	default:
		t.end("its agent is not reading its route updates")
	}
}

// handle takes the agent's control messages other than the heartbeat: a
// request for a new set of routes.
func (t *tunnelSession) handle(mt protocol.MsgType, body []byte) error {
	if mt != protocol.MsgRoutes {
		return nil // a message of a newer agent: not for this relay
	}
	if !t.updates {
		return fmt.Errorf("route request on a session without %q", protocol.FeatureRouteUpdates)
	}
	req, err := protocol.DecodeRouteRequest(body)
	if err != nil {
		return err
	}
	if len(req.Routes) > protocol.MaxRoutes {
		return fmt.Errorf("route request asks for %d routes; a session may have at most %d", len(req.Routes), protocol.MaxRoutes)
	}
	if !t.requests.Allow() {
		return fmt.Errorf("route requests come faster than %v a second", t.requests.Limit())
	}
	t.log.Info("agent asks for new routes", "routes", len(req.Routes))
	t.srv.reloadMu.Lock()
	defer t.srv.reloadMu.Unlock()
	t.mu.Lock()
	t.requested = req.Routes
	t.mu.Unlock()
	t.dropUnwanted()
	t.reconcile(req.Seq)
	return nil
}
