package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"github.com/burrow-tunnel/burrow/internal/access"
	"github.com/burrow-tunnel/burrow/protocol"
)

// Each route may carry an access policy, set in the agent's config and
// enforced here (internal/access): the relay is the side that sees the
// visitor's real address and can stop a request before it costs the home
// link anything. Guards are kept per host and prefix, and reused while the
// policy stays the same, so a reconnecting agent does not reset what a
// guard learnt (blocks, signed-out sessions).

// Refusal reasons in burrow_relay_refusals_total.
const (
	refusedAccessAddress = "access_address"
	refusedAccessBlocked = "access_login_blocked"
	refusedAccessRate    = "access_rate"
	refusedAccessGateway = "access_gateway"
)

// guards caches the compiled policies by host and prefix.
type guards struct {
	mu     sync.Mutex
	byPath map[string]guardEntry // guarded by mu

	keysOnce sync.Once
	keys     *access.Keys
	keysErr  error
	deps     *access.Deps
}

type guardEntry struct {
	policy string // the policy as JSON
	guard  *access.Guard
}

// guardFor returns the guard of a route's policy (nil without one), or the
// reason the route is refused.
func (s *Server) guardFor(host, prefix string, p *protocol.AccessPolicy) (*access.Guard, string) {
	if p == nil {
		return nil, ""
	}
	g := &s.guards
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, "access policy: " + err.Error()
	}
	key := host + prefix
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.byPath[key]; ok && e.policy == string(raw) {
		return e.guard, ""
	}
	deps := s.accessDeps(p.OIDC != nil)
	guard, err := access.Compile(p, host, prefix, deps)
	if err != nil {
		return nil, fmt.Sprintf("access policy not valid: %v", err)
	}
	if g.byPath == nil {
		g.byPath = map[string]guardEntry{}
	}
	g.byPath[key] = guardEntry{policy: string(raw), guard: guard}
	return guard, ""
}

// accessDeps are the guards' links to the relay; the cookie key is read
// (or made) in state_dir the first time a route signs visitors in.
func (s *Server) accessDeps(needKeys bool) *access.Deps {
	g := &s.guards
	if needKeys {
		g.keysOnce.Do(func() {
			g.keys, g.keysErr = access.LoadKeys(s.cfg.StateDir)
			if g.keysErr != nil {
				s.log.Error("routes with oidc sign-in are refused", "err", g.keysErr)
			}
		})
	}
	if g.deps == nil || (g.deps.Keys == nil && g.keys != nil) {
		g.deps = &access.Deps{Keys: g.keys, Log: s.log, Client: access.NewClient(), Refuse: s.refuseAccess}
	}
	return g.deps
}

// refuseAccess answers a request a route's policy refused.
func (s *Server) refuseAccess(w http.ResponseWriter, r *http.Request, why access.Refusal) {
	switch why {
	case access.RefusedAddress:
		s.metrics.refusals.WithLabelValues(refusedAccessAddress).Inc()
		s.page(w, r, http.StatusForbidden, pageAddressDenied, r.Host)
	case access.RefusedBlocked:
		s.metrics.refusals.WithLabelValues(refusedAccessBlocked).Inc()
		s.page(w, r, http.StatusTooManyRequests, pageLoginBlocked, r.Host)
	case access.RefusedRate:
		s.metrics.refusals.WithLabelValues(refusedAccessRate).Inc()
		s.page(w, r, http.StatusTooManyRequests, pageRateLimited, r.Host)
	default:
		s.metrics.refusals.WithLabelValues(refusedAccessGateway).Inc()
		s.page(w, r, http.StatusBadGateway, pageSignInDown, r.Host)
	}
}
