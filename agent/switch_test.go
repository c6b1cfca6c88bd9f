package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

// fakeLoss reports a path that loses 1 % of its packets once lossy is set.
type fakeLoss struct {
	lossy      *atomic.Bool
	sent, lost atomic.Uint64
}

func (f *fakeLoss) PathStats() protocol.PathStats {
	s := f.sent.Add(1000)
	if f.lossy.Load() {
		f.lost.Add(10)
	}
	return protocol.PathStats{PacketsSent: s, PacketsLost: f.lost.Load()}
}

// Once its QUIC path turns lossy, an agent on transport auto moves to TCP:
// the answer being streamed when it decides finishes whole on the session
// left behind, and new requests go over TCP.
func TestLossySwitchKeepsServing(t *testing.T) {
	// The origin streams /slow in 20 chunks, 100 ms apart.
	started := make(chan struct{}, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			fmt.Fprint(w, "ok")
			return
		}
		started <- struct{}{}
		for i := range 20 {
			fmt.Fprintf(w, "chunk %02d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	defer origin.Close()

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rs := relaytest.Start(t, relay.Config{
		Agents: []relay.AgentGrant{relaytest.Grant("nas", "switch-token", "switch.test")},
	}, log.With("role", "relay"))

	a, err := New(Config{
		Relay:            rs.TunnelAddr().String(),
		RelayFingerprint: rs.TunnelFingerprint(),
		Token:            "switch-token",
		Transport:        TransportAuto,
		LossCheck:        50 * time.Millisecond,
		Routes:           []Route{{Host: "switch.test", Service: origin.URL}},
	}, log.With("role", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	// Cubic, which every Linux has: this test is about the switch, not BBR.
	a.fallback = func() (string, error) { return "cubic", nil }
	var lossy atomic.Bool
	a.pathStats = func(s protocol.Session) (protocol.PathStatser, bool) {
		if _, ok := s.(protocol.PathStatser); !ok {
			return nil, false
		}
		return &fakeLoss{lossy: &lossy}, true
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	defer func() {
		acancel()
		if err := <-adone; err != nil {
			t.Errorf("agent Run: %v", err)
		}
		if t.Failed() {
			t.Log(logs.String())
		}
	}()

	public := "http://" + rs.HTTPAddr().String()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	fetch := func(path string) (int, string, error) {
		req, _ := http.NewRequest("GET", public+path, nil)
		req.Host = "switch.test"
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	testutil.WaitFor(t, 10*time.Second, "the agent serving over QUIC", func() bool {
		code, _, _ := fetch("/")
		return code == http.StatusOK && strings.Contains(logs.String(), "transport=quic")
	})

	type result struct {
		code int
		body string
		err  error
	}
	slow := make(chan result, 1)
	go func() {
		code, body, err := fetch("/slow")
		slow <- result{code, body, err}
	}()
	<-started
	lossy.Store(true)
	testutil.WaitFor(t, 10*time.Second, "the agent connected over TCP", func() bool {
		return strings.Contains(logs.String(), "moving to TCP") && strings.Contains(logs.String(), "transport=tcp")
	})
	code, body, err := fetch("/")
	if err != nil || code != http.StatusOK || body != "ok" {
		t.Fatalf("after the switch: %d %q %v", code, body, err)
	}
	r := <-slow
	if r.err != nil || r.code != http.StatusOK || strings.Count(r.body, "chunk") != 20 {
		t.Fatalf("the answer streamed across the switch: %d, %d chunks, %v", r.code, strings.Count(r.body, "chunk"), r.err)
	}
}

// A session being left serves on until its replacement is connected, however
// long that takes, and stops once it is and its streams are done: after the
// grace, or at drainFor with a stream still open.
func TestDrainWaitsForReplacement(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var active atomic.Int64
		replaced := make(chan struct{})
		done := make(chan struct{})
		go func() { drain(context.Background(), &active, replaced); close(done) }()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("drain ended with no replacement connected")
		default:
		}
		close(replaced)
		start := time.Now()
		<-done
		if d := time.Since(start); d < 2*time.Second || d > 3*time.Second {
			t.Errorf("with no stream active, drain ended %v after the replacement connected, want the grace (2s)", d)
		}

		active.Store(1)
		start = time.Now()
		drain(context.Background(), &active, replaced)
		if d := time.Since(start); d != drainFor {
			t.Errorf("with a stream active, drain ended after %v, want drainFor (%v)", d, drainFor)
		}
	})
}

// A session that ends by itself (its context) ends the drain at once, before
// or after its replacement connected.
func TestDrainEndsWithItsSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var active atomic.Int64
		active.Store(1)
		for _, connected := range []bool{false, true} {
			replaced := make(chan struct{})
			if connected {
				close(replaced)
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(5*time.Second, cancel)
			start := time.Now()
			drain(ctx, &active, replaced)
			if d := time.Since(start); d != 5*time.Second {
				t.Errorf("replacement connected %v: drain ended %v after start, want when its session ended (5s)", connected, d)
			}
		}
	})
}
