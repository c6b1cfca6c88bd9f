package relay

import (
	"crypto/sha256"
	"testing"
	"testing/synctest"

	"github.com/burrow-tunnel/burrow/protocol"
)

// A reload that takes an agent's token away, or the agent itself, while
// one of its sessions is being welcomed ends that session too: the
// session was authenticated under the old grant.
func TestReloadDuringHandshakeEndsRevokedSession(t *testing.T) {
	for _, change := range []string{"token", "removed"} {
		t.Run(change, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := sessionServer(t)
				cfg := reloadable(t, s, "nas.test")
				agentSide, done := serve(t.Context(), s)
				defer agentSide.Close()
				ctrl, err := agentSide.OpenStream(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				h := protocol.Hello{Version: protocol.Version, Token: "tok", Agent: "nas",
					Features: []string{protocol.FeatureRouteUpdates}, Routes: []protocol.Route{{Host: "nas.test"}}}
				if err := protocol.WriteMessage(ctrl, protocol.MsgHello, &h); err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // the relay has authenticated the agent and writes its welcome

				other := AgentGrant{Name: "other", TokenSHA256: sha256.Sum256([]byte("o")), Hosts: []string{"other.test"}}
				if change == "token" {
					cfg.Agents = []AgentGrant{{Name: "nas", TokenSHA256: sha256.Sum256([]byte("new")), Hosts: []string{"nas.test"}}}
				} else {
					cfg.Agents = []AgentGrant{other}
				}
				if err := s.Reload(cfg); err != nil {
					t.Fatal(err)
				}
				if _, err := protocol.ReadAnswer(ctrl); err != nil {
					t.Fatal(err)
				}
				go protocol.KeepAlive(t.Context(), agentSide, ctrl, protocol.HeartbeatPeriod, protocol.Control{
					Handle: func(protocol.MsgType, []byte) error { return nil }})
				synctest.Wait()
				if change == "removed" {
					// The agent comes back under another token.
					cfg.Agents = []AgentGrant{other, {Name: "nas", TokenSHA256: sha256.Sum256([]byte("new")), Hosts: []string{"nas.test"}}}
					if err := s.Reload(cfg); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
				}
				if s.reg.lookup("nas.test", "/") != nil {
					t.Error("nas.test is served by a session whose token the reload revoked")
				}
				select {
				case <-done:
				default:
					t.Error("the session authenticated with a revoked token lives on")
					agentSide.Close()
					<-done
				}
			})
		})
	}
}
