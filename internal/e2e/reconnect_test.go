package e2e

import (
	"context"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// reconnectBound is how soon after a restart the tunnel must serve again.
const reconnectBound = 5 * time.Second

// TestReconnect kills the relay, then the agent, with SIGKILL (no goodbye on
// the wire) and restarts it on the same ports and state: the tunnel must
// serve again within reconnectBound of the restart.
func TestReconnect(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tr)
			// Right after traffic, as in a deploy that restarts the relay under load.
			t.Run("RelayRestart", func(t *testing.T) { e.testRelayRestart(t, 0) })
			t.Run("AgentRestart", func(t *testing.T) {
				if err := e.agent.stop(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				e.restartAgent()
				d, err := e.waitReady(reconnectBound + 5*time.Second)
				if err != nil {
					t.Fatalf("no 200 within %v of the agent's restart: %v", d.Round(time.Millisecond), err)
				}
				t.Logf("%s: 200 through the relay %v after the agent's restart", tr, d.Round(time.Millisecond))
				if d > reconnectBound {
					t.Errorf("took %v, want < %v", d, reconnectBound)
				}
				e.checkServes(t)
			})
			// After the session has been idle for a while, as a relay restart
			// usually finds it: the agent then sends only keepalives.
			t.Run("RelayRestartIdle", func(t *testing.T) { e.testRelayRestart(t, 8*time.Second) })
			// A viewer paused a video: the agent's write of it waits for the
			// relay to read. A relay restart, then a stop, must still go through.
			t.Run("RelayRestartDuringPause", func(t *testing.T) {
				defer e.pausedDownload(t)()
				e.testRelayRestart(t, 0)
			})
			t.Run("AgentStopDuringPause", func(t *testing.T) {
				defer e.pausedDownload(t)()
				if err := e.agent.stop(syscall.SIGTERM); err != nil {
					t.Fatalf("%v (it waits for a write no one will read)", err)
				}
				e.restartAgent()
				if d, err := e.waitReady(reconnectBound + 5*time.Second); err != nil {
					t.Fatalf("no 200 within %v of the agent's restart: %v", d.Round(time.Millisecond), err)
				}
			})
			// A crashed agent sends nothing more: the relay must drop its
			// session (heartbeat) and answer 503 instead of routing to it.
			t.Run("AgentCrash", func(t *testing.T) {
				if err := e.agent.stop(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed := time.Now()
				// Silence ends the session after HeartbeatMisses periods; the rest is
				// the liveness check's granularity and a busy CI machine.
				bound := protocol.HeartbeatMisses*protocol.HeartbeatPeriod + 4*time.Second
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					status, _, _ := e.get(ctx, "/healthz", nil)
					cancel()
					if status == http.StatusServiceUnavailable {
						break
					}
					if time.Since(killed) > bound+5*time.Second {
						t.Fatalf("no 503 within %v of the agent's crash", time.Since(killed).Round(time.Millisecond))
					}
					time.Sleep(100 * time.Millisecond)
				}
				d := time.Since(killed)
				t.Logf("%s: 503 %v after the agent was killed", tr, d.Round(time.Millisecond))
				if d > bound {
					t.Errorf("took %v, want < %v", d.Round(time.Millisecond), bound)
				}
			})
		})
	}
}

// testRelayRestart lets the tunnel idle, SIGKILLs the relay, restarts it at
// once on the same ports and state, and measures until a request through it
// answers 200.
func (e *env) testRelayRestart(t *testing.T, idle time.Duration) {
	time.Sleep(idle)
	reconnects := func() float64 { return value(scrape(t, e.agentAdmin), "burrow_agent_reconnects_total", nil) }
	before := reconnects()
	if err := e.relay.stop(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e.restartRelay()
	// Wait well past the bound, so that a failure still reports the figure.
	d, err := e.waitReady(reconnectBound + 20*time.Second)
	if err != nil {
		t.Fatalf("no 200 within %v of the relay's restart: %v", d.Round(time.Millisecond), err)
	}
	t.Logf("%s: 200 through the relay %v after its restart (tunnel idle %v before the kill)", e.transport, d.Round(time.Millisecond), idle)
	if d > reconnectBound {
		t.Errorf("took %v, want < %v: the agent did not notice that the relay restarted (see the agent's log)", d.Round(time.Millisecond), reconnectBound)
	}
	e.checkServes(t)
	// One session lost, however many dials failed while the relay was down.
	if n := reconnects() - before; n != 1 {
		t.Errorf("burrow_agent_reconnects_total rose by %v over the relay's restart, want 1", n)
	}
}

// checkServes fetches a few things through the tunnel, to show a reconnected
// session carries more than the one request that found it up.
func (e *env) checkServes(t *testing.T) {
	t.Helper()
	for _, path := range []string{"/", "/stash/headers", "/files/small.bin"} {
		if status, _ := e.mustGet(path, nil); status != http.StatusOK {
			t.Errorf("GET %s after the restart: %d", path, status)
		}
	}
	// And a larger body, over a fresh stream.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/files/large.bin"), nil)
	req.Header.Set("Range", "bytes=0-8388607")
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	if err != nil || res.StatusCode != http.StatusPartialContent || n != 8<<20 {
		t.Errorf("8 MiB range after the restart: %d, %d bytes, %v", res.StatusCode, n, err)
	}
}

// pausedDownload starts the large download, reads 1 MiB of it and stops
// reading, as a browser does with a paused video, until the returned function
// is called. It returns once the tunnel has had time to fill up behind it.
func (e *env) pausedDownload(t *testing.T) (release func()) {
	t.Helper()
	release = e.startPausedDownload(t)
	time.Sleep(time.Second)
	return release
}

// startPausedDownload is pausedDownload without the wait.
func (e *env) startPausedDownload(t *testing.T) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	timer := time.AfterFunc(10*time.Second, cancel) // the start must not hang
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/files/large.bin"), nil)
	res, err := e.client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("starting a download: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	if _, err := io.CopyN(io.Discard, res.Body, 1<<20); err != nil {
		cancel()
		res.Body.Close()
		t.Fatalf("reading the download's first MiB: %v after %v", err, time.Since(start).Round(time.Millisecond))
	}
	timer.Stop()
	return func() {
		cancel()
		res.Body.Close()
	}
}
