package agent

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Access is a route's access policy (agent.yaml's routes[].access). The
// agent only states it: the relay enforces it, since the relay is where the
// visitor's real address is known and where a refused request costs the
// home link nothing.
type Access struct {
	// Allow and Deny are CIDRs of client addresses; an empty Allow lets all in.
	Allow       []string           `mapstructure:"allow"`
	Deny        []string           `mapstructure:"deny"`
	OIDC        *OIDCAccess        `mapstructure:"oidc"`
	ForwardAuth *ForwardAuthAccess `mapstructure:"forward_auth"`
	Bypass      BypassAccess       `mapstructure:"bypass"`
	LoginLimit  *LoginLimit        `mapstructure:"login_limit"`
	RateLimit   *RateLimit         `mapstructure:"rate_limit"`
}

// OIDCAccess is sign-in with an OpenID provider at the relay.
type OIDCAccess struct {
	Issuer   string `mapstructure:"issuer"`
	ClientID string `mapstructure:"client_id"`
	// ClientSecretFile holds the client secret; Validate reads it into ClientSecret.
	ClientSecretFile string   `mapstructure:"client_secret_file"`
	ClientSecret     string   `mapstructure:"-"`
	Scopes           []string `mapstructure:"scopes"`
	AllowedEmails    []string `mapstructure:"allowed_emails"`
	AllowedSubjects  []string `mapstructure:"allowed_subjects"`
	AllowedGroups    []string `mapstructure:"allowed_groups"`
	GroupsClaim      string   `mapstructure:"groups_claim"`
	// Session is how long a sign-in lasts (default 12h).
	Session time.Duration `mapstructure:"session"`
}

// ForwardAuthAccess asks a gateway (Authelia, Authentik, oauth2-proxy) about each request.
type ForwardAuthAccess struct {
	URL         string   `mapstructure:"url"`
	CopyHeaders []string `mapstructure:"copy_headers"`
}

// BypassAccess lets requests past sign-in.
type BypassAccess struct {
	APIKey bool     `mapstructure:"apikey"`
	Paths  []string `mapstructure:"paths"`
}

// LoginLimit blocks an address after failed sign-ins at the service.
type LoginLimit struct {
	Failures  int           `mapstructure:"failures"`
	Window    time.Duration `mapstructure:"window"`
	Block     time.Duration `mapstructure:"block"`
	LoginPath string        `mapstructure:"login_path"`
}

// RateLimit caps each address's request rate.
type RateLimit struct {
	PerSecond float64 `mapstructure:"per_second"`
	Burst     int     `mapstructure:"burst"`
}

// validate checks the policy under key and reads the client secret file.
func (a *Access) validate(key string, add func(string, string, ...any)) {
	for _, list := range []struct {
		name  string
		cidrs []string
	}{{"allow", a.Allow}, {"deny", a.Deny}} {
		for i, s := range list.cidrs {
			if _, err := netip.ParsePrefix(s); err != nil {
				if _, err := netip.ParseAddr(s); err != nil {
					add(fmt.Sprintf("%s.%s[%d]", key, list.name, i), "%q is not a CIDR (e.g. \"203.0.113.0/24\" or \"2001:db8::/32\")", s)
				}
			}
		}
	}
	if a.OIDC != nil && a.ForwardAuth != nil {
		add(key, "set oidc or forward_auth, not both")
	}
	if o := a.OIDC; o != nil {
		k := key + ".oidc"
		if u, err := url.Parse(o.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname()))) {
			add(k+".issuer", "%q must be the provider's https:// URL (e.g. \"https://auth.example.com\")", o.Issuer)
		}
		if o.ClientID == "" {
			add(k+".client_id", "is required (the client registered at the provider)")
		}
		if o.ClientSecretFile != "" {
			b, err := os.ReadFile(o.ClientSecretFile)
			switch {
			case err != nil:
				add(k+".client_secret_file", "%v", err)
			case strings.TrimSpace(string(b)) == "":
				add(k+".client_secret_file", "%s is empty", o.ClientSecretFile)
			default:
				o.ClientSecret = strings.TrimSpace(string(b))
			}
		}
		if len(o.AllowedEmails)+len(o.AllowedSubjects)+len(o.AllowedGroups) == 0 {
			add(k, "set allowed_emails, allowed_subjects or allowed_groups: otherwise anyone with an account at the provider gets in")
		}
		if o.Session < 0 || (o.Session > 0 && o.Session < time.Minute) {
			add(k+".session", "%v must be at least 1m (0 means 12h)", o.Session)
		}
	}
	if f := a.ForwardAuth; f != nil {
		if u, err := url.Parse(f.URL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			add(key+".forward_auth.url", "%q must be the gateway's verify URL (e.g. \"http://127.0.0.1:9091/api/verify\")", f.URL)
		}
		for i, h := range f.CopyHeaders {
			if h == "" || strings.ContainsAny(h, " :\t\r\n") {
				add(fmt.Sprintf("%s.forward_auth.copy_headers[%d]", key, i), "%q is not a header name", h)
			}
		}
	}
	for i, p := range a.Bypass.Paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#") {
			add(fmt.Sprintf("%s.bypass.paths[%d]", key, i), "%q must be a path starting with / (e.g. \"/healthz\")", p)
		}
	}
	if l := a.LoginLimit; l != nil {
		k := key + ".login_limit"
		if l.Failures == 0 {
			l.Failures = 5
		}
		if l.Window == 0 {
			l.Window = 10 * time.Minute
		}
		if l.Block == 0 {
			l.Block = 15 * time.Minute
		}
		if l.Failures < 1 {
			add(k+".failures", "%d must be at least 1", l.Failures)
		}
		if l.Window < 0 {
			add(k+".window", "%v must be positive", l.Window)
		}
		if l.Block < 0 {
			add(k+".block", "%v must be positive", l.Block)
		}
		if l.LoginPath != "" && !strings.HasPrefix(l.LoginPath, "/") {
			add(k+".login_path", "%q must start with / (Stash's is \"/login\")", l.LoginPath)
		}
	}
	if r := a.RateLimit; r != nil {
		if r.PerSecond <= 0 {
			add(key+".rate_limit.per_second", "%v must be above 0", r.PerSecond)
		}
		if r.Burst == 0 {
			r.Burst = max(1, int(r.PerSecond*2))
		}
		if r.Burst < 1 {
			add(key+".rate_limit.burst", "%d must be at least 1", r.Burst)
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// policy is the policy as the relay takes it; nil without one.
func (a *Access) policy() *protocol.AccessPolicy {
	if a == nil {
		return nil
	}
	p := &protocol.AccessPolicy{Allow: a.Allow, Deny: a.Deny,
		Bypass: protocol.AccessBypass{APIKey: a.Bypass.APIKey, Paths: a.Bypass.Paths}}
	if o := a.OIDC; o != nil {
		p.OIDC = &protocol.OIDCPolicy{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes,
			AllowedEmails: o.AllowedEmails, AllowedSubjects: o.AllowedSubjects, AllowedGroups: o.AllowedGroups,
			GroupsClaim: o.GroupsClaim, SessionMillis: o.Session.Milliseconds()}
	}
	if f := a.ForwardAuth; f != nil {
		p.ForwardAuth = &protocol.ForwardAuthPolicy{URL: f.URL, CopyHeaders: f.CopyHeaders}
	}
	if l := a.LoginLimit; l != nil {
		p.LoginLimit = &protocol.LoginLimit{Failures: l.Failures, WindowMilli: l.Window.Milliseconds(), BlockMillis: l.Block.Milliseconds(), LoginPath: l.LoginPath}
	}
	if r := a.RateLimit; r != nil {
		p.RateLimit = &protocol.RateLimit{PerSecond: r.PerSecond, Burst: r.Burst}
	}
	return p
}

// wireRoute is r as the relay is asked to publish it.
func wireRoute(r Route) protocol.Route {
	return protocol.Route{Host: r.Host, Prefix: r.Prefix, Access: r.Access.policy()}
}
