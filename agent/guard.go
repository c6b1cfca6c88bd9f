package agent

import (
	"context"
	"fmt"
	"log/slog"
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
		if time.Since(g.checked) <= guardFresh {
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
		return g.state, errNoLogin{service: g.route.Service}
	}
	g.warned = false
	return g.state, nil
}

// checkStashConfig logs what `burrow stash check` would say for a route.
func checkStashConfig(log *slog.Logger, r Route, publicURL string) {
	path, err := stash.FindConfig(r.StashConfigFile)
	if err != nil {
		log.Info("Stash's config.yml not found; external_host not checked (set routes[].stash.config_file)", "host", r.Host, "err", err)
		return
	}
	rep, err := stash.Check(path, stash.PublicBase(publicURL))
	if err != nil {
		log.Warn("could not check Stash's external_host", "host", r.Host, "err", err)
		return
	}
	level := slog.LevelInfo
	if !rep.OK() {
		level = slog.LevelWarn
	}
	log.Log(context.Background(), level, "Stash external_host: "+rep.Message, "host", r.Host, "config", path, "verdict", rep.Verdict.String())
}
