package relay_test

import (
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"

	"github.com/burrow-tunnel/burrow/agent"
)

// udpBlockedFront listens on one port number: TCP is forwarded to the relay's
// tunnel, UDP is swallowed, as on a network that drops UDP.
func udpBlockedFront(t *testing.T, tunnel string) string {
	t.Helper()
	var (
		tcp net.Listener
		udp net.PacketConn
		err error
	)
	for range 20 {
		tcp, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		udp, err = net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port))
		if err == nil {
			break
		}
		tcp.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		b := make([]byte, 2048)
		for {
			if _, _, err := udp.ReadFrom(b); err != nil {
				return
			}
		}
	}()
	var conns sync.WaitGroup
	go func() {
		defer wg.Done()
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				r, err := net.Dial("tcp", tunnel)
				if err != nil {
					return
				}
				defer r.Close()
				go func() { io.Copy(r, c); r.Close() }()
				io.Copy(c, r)
			}()
		}
	}()
	t.Cleanup(func() { tcp.Close(); udp.Close(); wg.Wait(); conns.Wait() })
	return tcp.Addr().String()
}

func TestAutoFallsBackToTCPWhenUDPIsBlocked(t *testing.T) {
	h := startRelay(t, []string{"stash.example.com"})
	front := udpBlockedFront(t, h.relay.TunnelAddr().String())
	start := time.Now()
	logs, welcomes := runAgent(t, front, h.relay.TunnelFingerprint(), h.token, "auto", []agent.Route{{Host: "stash.example.com", Service: newEcho(t)}})
	select {
	case <-welcomes:
	case <-time.After(10 * time.Second):
		t.Fatalf("agent did not connect; log:\n%s", logs)
	}
	took := time.Since(start)
	t.Logf("connected over TCP %v after start", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("fallback took %v, want within 5 s", took)
	}
	testutil.WaitFor(t, 2*time.Second, "transport=tcp in the agent's log", func() bool { return strings.Contains(logs.String(), "transport=tcp") })
	if code, _ := status(t, h.public+"/", "stash.example.com"); code != 200 {
		t.Errorf("through the TCP fallback: %d", code)
	}
}
