package relay_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/relay"
)

// fakeStash answers GraphQL like Stash: 401 when a login is set, data otherwise.
func fakeStash(t *testing.T, login bool) string {
	t.Helper()
	var l atomic.Bool
	l.Store(login)
	return fakeStashLogin(t, &l)
}

// fakeStashLogin is fakeStash with a login the test sets while it runs.
func fakeStashLogin(t *testing.T, login *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/graphql" && r.Method == http.MethodPost {
			if login.Load() && r.Header.Get("ApiKey") == "" {
				w.Header().Set("WWW-Authenticate", "FormBased")
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"version": map[string]any{"version": "v0.27.2"}}})
			return
		}
		w.Write([]byte("stash page"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestExposureSafety(t *testing.T) {
	h := startRelay(t, []string{"locked.example.com", "open.example.com", "allowed.example.com", "other.example.com"})
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not stash")) }))
	defer plain.Close()
	logs, welcomes := runAgent(t, h.relay.TunnelAddr().String(), h.relay.TunnelFingerprint(), h.token, "quic", []agent.Route{
		{Host: "locked.example.com", Service: fakeStash(t, true)},
		{Host: "open.example.com", Service: fakeStash(t, false)},
		{Host: "allowed.example.com", Service: fakeStash(t, false), AllowUnauthenticated: true},
		{Host: "other.example.com", Service: plain.URL},
	})
	select {
	case w := <-welcomes:
		var hosts []string
		for _, a := range w.Accepted {
			hosts = append(hosts, a.Host)
		}
		if got := strings.Join(hosts, ","); got != "locked.example.com,allowed.example.com,other.example.com" {
			t.Errorf("published %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	if !strings.Contains(logs.String(), "route not published") || !strings.Contains(logs.String(), "Username") {
		t.Errorf("agent log does not explain the refusal:\n%s", logs)
	}
	for host, want := range map[string]int{"locked.example.com": 200, "allowed.example.com": 200, "other.example.com": 200, "open.example.com": 503} {
		if code, body := status(t, h.public+"/", host); code != want {
			t.Errorf("%s: %d, want %d: %s", host, code, want, body)
		}
	}
}

// A login set in Stash while the agent runs is noticed within seconds: the
// route is published on the live session, and the agent says so.
func TestLoginSetWhileRunning(t *testing.T) {
	h := startRelay(t, []string{"open.example.com", "other.example.com"})
	var login atomic.Bool
	logs, welcomes := runAgent(t, h.relay.TunnelAddr().String(), h.relay.TunnelFingerprint(), h.token, "tcp", []agent.Route{
		{Host: "open.example.com", Service: fakeStashLogin(t, &login)},
		{Host: "other.example.com", Service: fakeStash(t, true)},
	})
	select {
	case <-welcomes:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	if code, _ := status(t, h.public+"/", "open.example.com"); code != http.StatusServiceUnavailable {
		t.Fatalf("a Stash without a login answered %d, want 503", code)
	}
	login.Store(true)
	testutil.WaitFor(t, 15*time.Second, "the route to be published", func() bool {
		code, _ := status(t, h.public+"/", "open.example.com")
		return code == http.StatusOK
	})
	if line := lineWith(logs.String(), `msg="Stash asks for a login now: publishing the route"`); !strings.Contains(line, "host=open.example.com") {
		t.Errorf("the agent did not say it publishes the route:\n%s", logs)
	}
}

// AnyHost (the demo's) serves a request for any name or address by its
// route, with the Host the visitor sent.
func TestAnyHost(t *testing.T) {
	s := relaytest.Start(t, relay.Config{Agents: []relay.AgentGrant{relaytest.Grant("demo", "test-token", "localhost")}, AnyHost: "localhost"}, testLogger(t, "relay"))
	origin := newOrigin(t)
	_, welcomes := runAgent(t, s.TunnelAddr().String(), s.TunnelFingerprint(), "test-token", "tcp", []agent.Route{{Host: "localhost", Service: origin.URL}})
	select {
	case <-welcomes:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}
	for _, host := range []string{"localhost", "192.168.1.5:8080", "nas.lan"} {
		resp, body := get(t, "http://"+s.HTTPAddr().String()+"/", host)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"host":"`+host+`"`) {
			t.Errorf("Host %s: %d %s", host, resp.StatusCode, body)
		}
	}
}
