package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/burrow-tunnel/burrow/agent/stash"
)

const (
	// guardFresh is how long a login check stays valid: a Stash restarted
	// without its login is caught within this time.
	guardFresh   = time.Minute
	probeTimeout = 5 * time.Second
	// probeRetry is how soon a service that did not answer is asked again.
	probeRetry = 5 * time.Second
	// loginRecheck is how soon a Stash refused for having no login is asked
	// again: a login set at home is noticed within two of these.
	loginRecheck = 5 * time.Second
)

// errNoLogin refuses a Stash that has no login and no allow_unauthenticated.
type errNoLogin struct{ service string }

func (e errNoLogin) Error() string {
	return fmt.Sprintf("Stash at %s has no login: not published. %s", e.service, stash.LoginHelp)
}

// loginGuard keeps a route's service from being published while it is a
// Stash without a login (unless the route allows it). A Stash without a
// login either serves the whole library to the internet or, on seeing a
// public X-Forwarded-For, locks itself.
type loginGuard struct {
	route  Route
	client *http.Client

	mu      sync.Mutex
	checked time.Time     // guarded by mu; when state was last learned (zero: never)
	probing chan struct{} // guarded by mu; closed when the probe in flight ends
	state   stash.LoginState
	warned  bool // guarded by mu; the refusal was logged
	refused bool // guarded by mu; the last verdict refused the route
	// loginSet: a route refused for want of a login may be served now;
	// guarded by mu, cleared by loginAppeared.
	loginSet bool
}

// loginAppeared reports, once, that a Stash refused for having no login has
// one now.
func (g *loginGuard) loginAppeared() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	set := g.loginSet
	g.loginSet = false
	return set
}

// expire makes the next check ask the service again.
func (g *loginGuard) expire() {
	g.mu.Lock()
	g.checked = time.Time{}
	g.mu.Unlock()
}

// isRefused reports whether the last verdict refused the route.
func (g *loginGuard) isRefused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

// warnOnce reports true the first time a refusal is to be logged, and again
// after the route was served in between.
func (g *loginGuard) warnOnce() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := !g.warned
	g.warned = true
	return first
}

// isStash reports whether the last probe found a Stash, or the route names Stash's config.
func (g *loginGuard) isStash() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == stash.LoginRequired || g.state == stash.NoLogin || g.route.StashConfigFile != ""
}

func newLoginGuard(r Route) *loginGuard {
	return &loginGuard{route: r, client: &http.Client{
		Timeout:       probeTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// check probes the service unless a recent answer is known. It returns the
// state, and an error only when the route must not be served. A service that
// does not answer is not refused here: its streams fail on their own, and
// the next stream probes again.
func (g *loginGuard) check(ctx context.Context) (stash.LoginState, error) {
	if !strings.HasPrefix(g.route.Service, "http://") {
		return stash.NotStash, nil
	}
	for {
		g.mu.Lock()
		fresh := guardFresh
		if g.refused {
			fresh = loginRecheck // the owner may be setting the login right now
		}
		if time.Since(g.checked) <= fresh {
			st, err := g.verdictLocked()
			g.mu.Unlock()
			return st, err
		}
		if g.probing == nil {
			// This caller probes, without the lock; others wait for its answer.
			done := make(chan struct{})
			g.probing = done
			g.mu.Unlock()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			st, err := stash.ProbeLogin(pctx, g.client, g.route.Service)
			cancel()
			g.mu.Lock()
			if err != nil {
				// Not answering: keep the last verdict, and ask again soon.
				g.checked = time.Now().Add(probeRetry - guardFresh)
			} else {
				g.state, g.checked = st, time.Now()
			}
			g.probing = nil
			close(done)
			st, verr := g.verdictLocked()
			g.mu.Unlock()
			return st, verr
		}
		wait := g.probing
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// verdictLocked refuses a Stash without a login unless the route allows it.
func (g *loginGuard) verdictLocked() (stash.LoginState, error) {
	if g.state == stash.NoLogin && !g.route.AllowUnauthenticated {
		g.refused = true
		return g.state, errNoLogin{service: g.route.Service}
	}
	if g.refused {
		g.refused, g.loginSet = false, true
	}
	g.warned = false
	return g.state, nil
}

// watchLogins asks each Stash refused for having no login again every
// loginRecheck until ctx ends. When one has a login, the live sessions ask
// the relay to publish its route; without a live session, the next
// connection does (Run retries within loginRecheck).
func (a *Agent) watchLogins(ctx context.Context) {
	t := time.NewTicker(loginRecheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rc := a.rc.Load()
		changed := false
		for _, g := range rc.guards {
			if g.isRefused() {
				g.expire() // the tick is the recheck: ask now
				if _, err := g.check(ctx); err == nil {
					changed = true
				}
			}
		}
		if sessions := a.liveSessions(); changed && len(sessions) > 0 {
			a.reloadMu.Lock()
			if a.rc.Load() == rc {
				a.askAll(rc, sessions)
			}
			a.reloadMu.Unlock()
		}
	}
}
