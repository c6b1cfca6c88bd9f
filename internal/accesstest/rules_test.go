package accesstest

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/origin"
)

func fixed(a *agent.Access) func(string) *agent.Access {
	return func(string) *agent.Access { return a }
}

// TestAddressRules: allow and deny on the client's real address, IPv4 and
// IPv6, taken from X-Forwarded-For only behind a trusted proxy.
func TestAddressRules(t *testing.T) {
	xff := func(a string) http.Header { return http.Header{"X-Forwarded-For": {a}} }
	t.Run("direct ipv4", func(t *testing.T) {
		e := start(t, setup{access: fixed(&agent.Access{Deny: []string{"127.0.0.1/32"}})})
		resp, body := e.get(t, e.base+"/healthz", nil)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access denied") {
			t.Fatalf("denied address: %d %q", resp.StatusCode, body)
		}
		if _, ok := e.site.Observations().Last("/healthz"); ok {
			t.Error("a denied request reached the service")
		}
	})
	t.Run("direct ipv4 allowed, spoofed header ignored", func(t *testing.T) {
		e := start(t, setup{access: fixed(&agent.Access{Allow: []string{"127.0.0.0/8"}, Deny: []string{"203.0.113.0/24"}})})
		if resp, _ := e.get(t, e.base+"/healthz", xff("203.0.113.9")); resp.StatusCode != http.StatusOK {
			t.Fatalf("allowed address with a spoofed X-Forwarded-For: %d", resp.StatusCode)
		}
	})
	t.Run("direct ipv6", func(t *testing.T) {
		e := start(t, setup{listen: "[::1]:0", access: fixed(&agent.Access{Allow: []string{"203.0.113.0/24"}})})
		if resp, _ := e.get(t, e.base+"/healthz", nil); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("::1 outside allow: %d", resp.StatusCode)
		}
		e2 := start(t, setup{listen: "[::1]:0", access: fixed(&agent.Access{Allow: []string{"::1/128"}})})
		if resp, _ := e2.get(t, e2.base+"/healthz", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("::1 inside allow: %d", resp.StatusCode)
		}
	})
	t.Run("behind trusted proxy", func(t *testing.T) {
		e := start(t, setup{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			access: fixed(&agent.Access{Deny: []string{"203.0.113.0/24", "2001:db8::/32"}})})
		for addr, want := range map[string]int{
			"203.0.113.7": http.StatusForbidden, "2001:db8::1": http.StatusForbidden,
			"198.51.100.1": http.StatusOK, "2001:db9::1": http.StatusOK,
		} {
			if resp, _ := e.get(t, e.base+"/healthz", xff(addr)); resp.StatusCode != want {
				t.Errorf("client %s behind the proxy: %d, want %d", addr, resp.StatusCode, want)
			}
		}
	})
}

// TestAPIKeyBypass: with bypass.apikey, a player's ?apikey= stream URL and
// a client's ApiKey header reach the service without signing in at the
// relay (the service checks the key); without it, they are sent to sign in.
func TestAPIKeyBypass(t *testing.T) {
	policy := func(bypass bool) *agent.Access {
		return &agent.Access{
			// Never contacted: nobody signs in here.
			OIDC:   &agent.OIDCAccess{Issuer: "http://127.0.0.1:1", ClientID: "burrow", AllowedEmails: []string{"owner@example.com"}},
			Bypass: agent.BypassAccess{APIKey: bypass, Paths: []string{"/healthz"}},
		}
	}
	so := origin.Options{RequireLogin: true, APIKey: "k3y"}
	t.Run("on", func(t *testing.T) {
		e := start(t, setup{origin: so, access: fixed(policy(true))})
		resp, _ := e.get(t, e.base+"/scene/1/stream?apikey=k3y", http.Header{"Range": {"bytes=0-99"}})
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("player with ?apikey=: %d", resp.StatusCode)
		}
		resp, _ = e.do(t, http.MethodPost, e.base+"/graphql", http.Header{"ApiKey": {"k3y"}, "Content-Type": {"application/json"}},
			strings.NewReader(`{"query":"{ systemStatus { status } }"}`))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("ApiKey header: %d", resp.StatusCode)
		}
		// The service still checks the key: it sends a wrong one to its own login.
		if resp, _ := e.get(t, e.base+"/scene/1/stream?apikey=wrong", nil); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/stash/login?") {
			t.Fatalf("wrong key: %d %q, want the service's redirect to its login", resp.StatusCode, resp.Header.Get("Location"))
		}
		if resp, _ := e.get(t, e.base+"/healthz", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("bypassed path: %d", resp.StatusCode)
		}
		if resp, _ := e.get(t, e.base+"/", page); resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "/stash/.burrow/signin") {
			t.Fatalf("page without a key: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("off", func(t *testing.T) {
		e := start(t, setup{origin: so, access: fixed(policy(false))})
		resp, _ := e.get(t, e.base+"/scene/1/stream?apikey=k3y", page)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/stash/.burrow/signin?") {
			t.Fatalf("?apikey= without the bypass: %d %q, want the sign-in page", resp.StatusCode, loc)
		}
		resp, body := e.do(t, http.MethodPost, e.base+"/graphql", http.Header{"ApiKey": {"k3y"}}, strings.NewReader(`{}`))
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "FormBased" {
			t.Fatalf("ApiKey header without the bypass: %d %v %q, want the relay's 401", resp.StatusCode, resp.Header, body)
		}
		// (The agent's own login check also asks /graphql, without a key.)
		if got, ok := e.site.Observations().Last("/graphql"); ok && got.Header.Get("ApiKey") != "" {
			t.Error("a request without a sign-in reached the service")
		}
	})
}

// TestLoginLimit: failed sign-ins at Stash's form (and 401s to wrong API
// keys) block the address with a 429 page; a successful sign-in resets the
// count; another address is unaffected. IPv4 and IPv6 behind a trusted proxy.
func TestLoginLimit(t *testing.T) {
	e := start(t, setup{
		trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		origin:  origin.Options{RequireLogin: true, APIKey: "k3y", Username: "owner", Password: "right"},
		access:  fixed(&agent.Access{LoginLimit: &agent.LoginLimit{Failures: 3, Window: 10 * time.Minute, Block: 15 * time.Minute}}),
	})
	e.client.Jar = nil // no session from a good password carried on
	login := func(addr, pass string) int {
		form := url.Values{"username": {"owner"}, "password": {pass}}
		resp, _ := e.do(t, http.MethodPost, e.base+"/login",
			http.Header{"X-Forwarded-For": {addr}, "Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
		return resp.StatusCode
	}
	for _, addr := range []string{"203.0.113.5", "2001:db8::5"} {
		t.Run(addr, func(t *testing.T) {
			// Two failures, a success: the count starts again.
			for range 2 {
				if c := login(addr, "wrong"); c == http.StatusTooManyRequests {
					t.Fatal("blocked too early")
				}
			}
			if c := login(addr, "right"); c != http.StatusFound {
				t.Fatalf("good password: %d", c)
			}
			for range 2 {
				if c := login(addr, "wrong"); c == http.StatusTooManyRequests {
					t.Fatal("blocked although a success reset the count")
				}
			}
			// The third failure: a GraphQL 401 to a wrong key counts too.
			resp, _ := e.do(t, http.MethodPost, e.base+"/graphql", http.Header{"X-Forwarded-For": {addr}, "ApiKey": {"guess"}}, strings.NewReader(`{}`))
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("wrong key: %d", resp.StatusCode)
			}
			resp, body := e.get(t, e.base+"/login", http.Header{"X-Forwarded-For": {addr}})
			if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
				t.Fatalf("after 3 failures: %d %q", resp.StatusCode, body)
			}
			if c := login(addr, "right"); c != http.StatusTooManyRequests {
				t.Fatalf("a blocked address signed in: %d", c)
			}
			if c := login("198.51.100.77", "right"); c != http.StatusFound {
				t.Fatalf("another address: %d", c)
			}
		})
	}
}

// TestRateLimit: over rate_limit, an address gets a 429 page; another does not.
func TestRateLimit(t *testing.T) {
	e := start(t, setup{
		trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		access:  fixed(&agent.Access{RateLimit: &agent.RateLimit{PerSecond: 0.001, Burst: 2}}),
	})
	h := http.Header{"X-Forwarded-For": {"203.0.113.1"}}
	for i := range 2 {
		if resp, _ := e.get(t, e.base+"/healthz", h); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	if resp, body := e.get(t, e.base+"/healthz", h); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "Too many requests") {
		t.Fatalf("over the rate: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, e.base+"/healthz", http.Header{"X-Forwarded-For": {"203.0.113.2"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
}
