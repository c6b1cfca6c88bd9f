// Package access is the relay's access control for one route: address
// rules, a request-rate limit, blocking of clients that keep failing the
// service's own sign-in, and sign-in in front of the service, with OpenID
// Connect at the relay or a forward-auth gateway. Requests carrying Stash's
// API key, and chosen paths, may bypass the sign-in (never the address
// rules or limits): the service still checks the key itself.
package access

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Refusal says why the relay refused a request; the relay renders its page.
type Refusal int

// Refusals.
const (
	// RefusedAddress: the client's address is denied or not allowed (403).
	RefusedAddress Refusal = iota + 1
	// RefusedBlocked: too many failed sign-ins from the address (429).
	RefusedBlocked
	// RefusedRate: the address is over its request rate (429).
	RefusedRate
	// RefusedGateway: the sign-in provider or gateway did not answer (502).
	RefusedGateway
)

// Deps is what a Guard needs from the relay.
type Deps struct {
	// Keys seal the sign-in cookies; required with OIDC.
	Keys *Keys
	Log  *slog.Logger
	// Client reaches OpenID providers and forward-auth gateways.
	Client *http.Client
	// Refuse answers a refused request with the relay's page.
	Refuse func(w http.ResponseWriter, r *http.Request, why Refusal)
}

// Defaults for keys left out.
const (
	DefaultSession     = 12 * time.Hour
	DefaultLoginPath   = "/login"
	DefaultGroupsClaim = "groups"
	// Endpoints is the path, below the route's prefix, of the relay's own
	// sign-in pages.
	Endpoints = "/.burrow/"
)

// Guard enforces one route's policy.
type Guard struct {
	host, prefix string
	deps         *Deps
	allow, deny  []netip.Prefix
	bypassKey    bool
	bypassPaths  []string
	identity     []string // header names a gateway sets: never taken from the client
	login        *loginLimiter
	loginPath    string
	rate         *rateLimiter
	oidc         *oidcSignIn
	forward      *forwardAuth
}

// Compile checks a route's policy as the agent sent it and makes its Guard.
// The error says what is wrong, for the agent's log.
func Compile(p *protocol.AccessPolicy, host, prefix string, d *Deps) (*Guard, error) {
	if p == nil {
		return nil, nil
	}
	g := &Guard{host: host, prefix: prefix, deps: d, bypassKey: p.Bypass.APIKey}
	var errs []error
	var err error
	if g.allow, err = ParsePrefixes(p.Allow); err != nil {
		errs = append(errs, fmt.Errorf("access.allow: %w", err))
	}
	if g.deny, err = ParsePrefixes(p.Deny); err != nil {
		errs = append(errs, fmt.Errorf("access.deny: %w", err))
	}
	for _, bp := range p.Bypass.Paths {
		if !strings.HasPrefix(bp, "/") || strings.ContainsAny(bp, "?#") {
			errs = append(errs, fmt.Errorf("access.bypass.paths: %q must be a path starting with /", bp))
		}
		g.bypassPaths = append(g.bypassPaths, strings.TrimSuffix(bp, "/"))
	}
	if l := p.LoginLimit; l != nil {
		if l.Failures < 1 || l.WindowMilli <= 0 || l.BlockMillis <= 0 {
			errs = append(errs, errors.New("access.login_limit: failures, window and block must be positive"))
		}
		g.login = newLoginLimiter(l.Failures, time.Duration(l.WindowMilli)*time.Millisecond, time.Duration(l.BlockMillis)*time.Millisecond)
		g.loginPath = l.LoginPath
		if g.loginPath == "" {
			g.loginPath = DefaultLoginPath
		} else if !strings.HasPrefix(g.loginPath, "/") {
			errs = append(errs, fmt.Errorf("access.login_limit.login_path: %q must start with /", l.LoginPath))
		}
	}
	if rl := p.RateLimit; rl != nil {
		if rl.PerSecond <= 0 || rl.Burst < 1 {
			errs = append(errs, errors.New("access.rate_limit: per_second must be above 0 and burst at least 1"))
		}
		g.rate = newRateLimiter(rl.PerSecond, rl.Burst)
	}
	if p.OIDC != nil && p.ForwardAuth != nil {
		errs = append(errs, errors.New("access: set oidc or forward_auth, not both"))
	}
	if p.OIDC != nil {
		if g.oidc, err = newOIDC(p.OIDC, g); err != nil {
			errs = append(errs, err)
		}
	}
	if p.ForwardAuth != nil {
		if g.forward, err = newForwardAuth(p.ForwardAuth, g); err != nil {
			errs = append(errs, err)
		} else {
			g.identity = g.forward.copy
		}
	}
	if g.oidc != nil || g.forward != nil {
		// Behind a sign-in, no visitor may pass for someone through the
		// headers gateways use, whether or not this route copies them.
		for _, h := range identityHeaders {
			if !slices.Contains(g.identity, h) {
				g.identity = append(g.identity, h)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return g, nil
}

// ParsePrefixes parses CIDRs (a bare address is its own /32 or /128).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (e.g. \"203.0.113.0/24\" or \"2001:db8::/32\")", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Check decides a request from the client at addr. When it returns ok, the
// request (its identity headers and Burrow's cookies removed, a gateway's
// added) goes on to the service; otherwise Check has answered it.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request, addr netip.Addr) (*http.Request, bool) {
	addr = addr.Unmap()
	if !g.addressAllowed(addr) {
		g.deps.Refuse(w, r, RefusedAddress)
		return nil, false
	}
	if g.login != nil {
		if _, blocked := g.login.blocked(addr); blocked {
			g.deps.Refuse(w, r, RefusedBlocked)
			return nil, false
		}
	}
	if g.rate != nil && !g.rate.allow(addr) {
		g.deps.Refuse(w, r, RefusedRate)
		return nil, false
	}
	if g.oidc == nil && g.forward == nil && len(g.identity) == 0 {
		return r, true
	}
	r = r.Clone(r.Context())
	for _, h := range g.identity {
		r.Header.Del(h)
	}
	if g.oidc != nil {
		if rest, ok := strings.CutPrefix(g.rel(r.URL.Path), Endpoints); ok {
			g.oidc.serveEndpoint(w, r, rest)
			return nil, false
		}
		_, signedIn := g.oidc.sessionFrom(r)
		g.oidc.dropCookies(r)
		if signedIn || g.bypassed(r) {
			return r, true
		}
		g.oidc.refuse(w, r)
		return nil, false
	}
	if g.bypassed(r) {
		return r, true
	}
	if g.forward != nil {
		return g.forward.check(w, r, addr)
	}
	return r, true
}

func (g *Guard) addressAllowed(addr netip.Addr) bool {
	for _, p := range g.deny {
		if p.Contains(addr) {
			return false
		}
	}
	if len(g.allow) == 0 {
		return true
	}
	for _, p := range g.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// rel is a request path below the route's prefix.
func (g *Guard) rel(p string) string {
	if g.prefix == "" {
		return p
	}
	rest := strings.TrimPrefix(p, g.prefix)
	if rest == "" {
		return "/"
	}
	return rest
}

// bypassed reports whether r may skip sign-in: it carries Stash's API key
// (when bypass.apikey is on), or its path is under one of bypass.paths.
func (g *Guard) bypassed(r *http.Request) bool {
	if g.bypassKey && (r.Header.Get("ApiKey") != "" || hasAPIKeyQuery(r.URL)) {
		return true
	}
	p := g.rel(r.URL.Path)
	for _, bp := range g.bypassPaths {
		if rest, ok := strings.CutPrefix(p, bp); ok && (rest == "" || rest[0] == '/' || bp == "") {
			return true
		}
	}
	return false
}

func hasAPIKeyQuery(u *url.URL) bool {
	if !strings.Contains(strings.ToLower(u.RawQuery), "apikey=") {
		return false // the common case, without parsing the query
	}
	return u.Query().Get("apikey") != ""
}

// Observe counts the service's answer to a request Check let through: a
// failed sign-in at the service (its login form's failure, or a 401 to a
// request that carried credentials) counts towards a block; a successful
// one forgets the client's failures.
func (g *Guard) Observe(r *http.Request, addr netip.Addr, status int) {
	if g.login == nil || status == 0 {
		return
	}
	addr = addr.Unmap()
	loginPost := r.Method == http.MethodPost && g.rel(r.URL.Path) == g.loginPath
	switch {
	case loginPost && status >= 300 && status < 400:
		// Stash answers a good password with a redirect to the page asked for.
		g.login.succeed(addr)
		return
	case loginPost && status < 500:
		// …and a bad one with the login page again (200), or a 401.
	case status == http.StatusUnauthorized && carriesCredentials(r):
	default:
		return
	}
	until, count, started := g.login.fail(addr)
	if started {
		g.deps.Log.Warn("client blocked after failed sign-ins", "host", g.host, "prefix", g.prefix,
			"client", addr.String(), "failures", count, "until", until.Format(time.RFC3339))
	}
}

func carriesCredentials(r *http.Request) bool {
	return r.Header.Get("ApiKey") != "" || r.Header.Get("Authorization") != "" || hasAPIKeyQuery(r.URL)
}

// canonicalHeaders checks header names and returns them canonical.
func canonicalHeaders(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, " :\t\r\n") {
			return nil, fmt.Errorf("%q is not a header name", n)
		}
		out = append(out, textproto.CanonicalMIMEHeaderKey(n))
	}
	return out, nil
}

// identityHeaders are the headers the common sign-in gateways (Authelia,
// Authentik, oauth2-proxy) use to name the visitor to a service; the relay
// drops any a visitor sends on a route behind a sign-in.
var identityHeaders = []string{
	"Remote-User", "Remote-Groups", "Remote-Email", "Remote-Name",
	"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups",
	"X-Auth-Request-Preferred-Username", "X-Auth-Request-Access-Token",
	"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups", "X-Forwarded-Preferred-Username",
	"X-Authentik-Username", "X-Authentik-Groups", "X-Authentik-Email", "X-Authentik-Name", "X-Authentik-Uid",
}
