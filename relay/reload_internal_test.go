package relay

import (
	"crypto/sha256"
	"encoding/json"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/burrow-tunnel/burrow/protocol"
)

// reloadable is sessionServer's config made whole, so that Reload takes it.
func reloadable(t *testing.T, s *Server, hosts ...string) Config {
	c := Config{
		Tunnel:   TunnelConfig{Listen: "127.0.0.1:0"},
		Public:   PublicConfig{HTTP: "127.0.0.1:0"},
		StateDir: t.TempDir(),
		Agents:   []AgentGrant{{Name: "nas", TokenSHA256: sha256.Sum256([]byte("tok")), Hosts: hosts}},
	}
	s.cfg = c
	s.conf.Store(&c)
	return c
}

// agentWithUpdates says hello asking for routes, taking route updates, and
// runs the heartbeat; updates gets the relay's route updates.
func agentWithUpdates(t *testing.T, agentSide protocol.Session, features []string, routes ...string) (out chan<- protocol.Message, updates <-chan protocol.RouteUpdate) {
	t.Helper()
	ctrl, err := agentSide.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	h := protocol.Hello{Version: protocol.Version, Token: "tok", Agent: "nas", Features: features}
	for _, r := range routes {
		h.Routes = append(h.Routes, protocol.Route{Host: r})
	}
	if err := protocol.WriteMessage(ctrl, protocol.MsgHello, &h); err != nil {
		t.Fatal(err)
	}
	w, err := protocol.ReadAnswer(ctrl)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(features, protocol.FeatureRouteUpdates) != slices.Contains(w.Features, protocol.FeatureRouteUpdates) {
		t.Fatalf("welcome features %v for hello features %v", w.Features, features)
	}
	o, u := make(chan protocol.Message, 1), make(chan protocol.RouteUpdate, 4)
	go protocol.KeepAlive(t.Context(), agentSide, ctrl, protocol.HeartbeatPeriod, protocol.Control{
		Out: o,
		Handle: func(mt protocol.MsgType, body []byte) error {
			var ru protocol.RouteUpdate
			if err := json.Unmarshal(body, &ru); err != nil {
				return err
			}
			u <- ru
			return nil
		},
	})
	return o, u
}

func accepted(u protocol.RouteUpdate) []string {
	var hosts []string
	for _, a := range u.Accepted {
		hosts = append(hosts, a.Host)
	}
	slices.Sort(hosts)
	return hosts
}

// A reload publishes a host an agent asked for as soon as its grant has it,
// unpublishes a host its grant lost, and tells the live session each time;
// the agent's own request for other routes is answered the same way; a new
// token ends the session.
func TestReloadRepublishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := sessionServer(t)
		cfg := reloadable(t, s, "nas.test")
		agentSide, done := serve(t.Context(), s)
		defer agentSide.Close()
		out, updates := agentWithUpdates(t, agentSide, []string{protocol.FeatureRouteUpdates}, "nas.test", "extra.test")
		synctest.Wait()
		if s.reg.lookup("extra.test", "/") != nil {
			t.Fatal("extra.test published before it was granted")
		}
		nasID := s.reg.lookup("nas.test", "/").id

		cfg.Agents[0].Hosts = []string{"nas.test", "extra.test"}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if u := <-updates; u.Seq != 0 || !slices.Equal(accepted(u), []string{"extra.test", "nas.test"}) {
			t.Errorf("update after granting extra.test: %+v", u)
		}
		if s.reg.lookup("extra.test", "/") == nil {
			t.Error("extra.test not published after the reload granted it")
		}
		if rt := s.reg.lookup("nas.test", "/"); rt == nil || rt.id != nasID {
			t.Error("nas.test was republished: its streams would have been cut")
		}

		cfg.Agents[0].Hosts = []string{"extra.test"}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if u := <-updates; !slices.Equal(accepted(u), []string{"extra.test"}) || len(u.Refused) != 1 {
			t.Errorf("update after taking nas.test away: %+v", u)
		}
		if s.reg.lookup("nas.test", "/") != nil {
			t.Error("nas.test still published after the reload took it away")
		}

		// The agent asks for nas.test alone: not granted, and extra.test goes.
		out <- protocol.Message{Type: protocol.MsgRoutes, Body: &protocol.RouteRequest{Seq: 1, Routes: []protocol.Route{{Host: "nas.test"}}}}
		if u := <-updates; u.Seq != 1 || len(u.Accepted) != 0 || len(u.Refused) != 1 || u.Refused[0].Host != "nas.test" {
			t.Errorf("answer to the route request: %+v", u)
		}
		if s.reg.lookup("extra.test", "/") != nil {
			t.Error("extra.test still published after the agent stopped asking for it")
		}

		bad := cfg
		bad.Agents = []AgentGrant{{Name: "nas", Hosts: []string{"nas.test"}}}
		if err := s.Reload(bad); err == nil {
			t.Error("a config without token_sha256 was taken")
		}
		select {
		case <-done:
			t.Fatal("an invalid config ended the session")
		default:
		}

		cfg.Agents = []AgentGrant{{Name: "nas", TokenSHA256: sha256.Sum256([]byte("new")), Hosts: []string{"nas.test"}}}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		<-done // the new token ended the session
	})
}

// An agent that takes no route updates is disconnected when a reload
// changes its routes: it connects anew and gets them in its welcome.
func TestReloadEndsSessionWithoutUpdates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := sessionServer(t)
		cfg := reloadable(t, s, "nas.test")
		agentSide, done := serve(t.Context(), s)
		defer agentSide.Close()
		agentWithUpdates(t, agentSide, nil, "nas.test", "extra.test")
		synctest.Wait()
		cfg.Agents = append(cfg.Agents, AgentGrant{Name: "other", TokenSHA256: sha256.Sum256([]byte("o")), Hosts: []string{"other.test"}})
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("a reload that left the agent's routes alone ended its session")
		default:
		}
		cfg.Agents[0].Hosts = []string{"nas.test", "extra.test"}
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		<-done
	})
}

// A route request for more than protocol.MaxRoutes routes, or route
// requests faster than the relay takes them, end the session.
func TestRouteRequestBounds(t *testing.T) {
	for _, c := range []struct {
		name     string
		requests int
		routes   int
	}{{"too many routes", 1, protocol.MaxRoutes + 1}, {"too fast", routeRequestBurst + 2, 1}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := sessionServer(t)
				reloadable(t, s, "nas.test")
				agentSide, done := serve(t.Context(), s)
				defer agentSide.Close()
				out, updates := agentWithUpdates(t, agentSide, []string{protocol.FeatureRouteUpdates}, "nas.test")
				go func() {
					for {
						select {
						case <-updates:
						case <-t.Context().Done():
							return
						}
					}
				}()
				var routes []protocol.Route
				for i := range c.routes {
					routes = append(routes, protocol.Route{Host: "nas.test", Prefix: "/p" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
				}
				for seq := range c.requests {
					select {
					case out <- protocol.Message{Type: protocol.MsgRoutes, Body: &protocol.RouteRequest{Seq: uint64(seq + 1), Routes: routes}}:
					case <-done:
					}
				}
				<-done
			})
		})
	}
}
