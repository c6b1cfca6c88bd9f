package agent

import (
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/protocol"
)

// TestPolicyNeedsEnforcingRelay: a route with an access policy, accepted by a
// relay that does not enforce policies, is marked so that none of its
// streams is served; without a policy, or on a relay that enforces, it is served.
func TestPolicyNeedsEnforcingRelay(t *testing.T) {
	routes := []Route{
		{Host: "a.example", Service: "http://127.0.0.1:1", Access: &Access{Allow: []string{"203.0.113.0/24"}}},
		{Host: "b.example", Service: "http://127.0.0.1:1"},
	}
	ask := &askedRoutes{rc: newRouteConfig(routes, nil), idx: []int{0, 1}}
	accepted := []protocol.AcceptedRoute{{ID: 1, Host: "a.example"}, {ID: 2, Host: "b.example"}}
	live, _ := ask.match(accepted, false)
	if !live[1].unenforced || live[2].unenforced {
		t.Fatalf("old relay: unenforced = %v, %v; want true, false", live[1].unenforced, live[2].unenforced)
	}
	live, _ = ask.match(accepted, true)
	if live[1].unenforced {
		t.Fatal("a relay that enforces: the route is refused")
	}
	if p := wireRoute(routes[0]); p.Access == nil || p.Access.Allow[0] != "203.0.113.0/24" {
		t.Fatalf("the policy is not sent: %+v", p)
	}
}

func TestAccessValidate(t *testing.T) {
	c := Config{Relay: "r:1", Token: "t", Routes: []Route{{Host: "a.example", Service: "http://127.0.0.1:1", Access: &Access{
		Allow:      []string{"nope"},
		OIDC:       &OIDCAccess{Issuer: "http://auth.example.com", ClientSecretFile: "/nonexistent"},
		LoginLimit: &LoginLimit{LoginPath: "login"},
	}}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"routes[0].access.allow[0]", "routes[0].access.oidc.issuer", "routes[0].access.oidc.client_id",
		"routes[0].access.oidc.client_secret_file", "routes[0].access.oidc:", "routes[0].access.login_limit.login_path"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}
