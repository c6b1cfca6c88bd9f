package browsertest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

// The relay's status page, as a browser shows it: the agent, its session
// and its route, and the route's throughput rising while a download runs.
// The screenshot goes to $BURROW_ARTIFACTS (status-page.png) when set.
func TestStatusPage(t *testing.T) {
	browser := chromium(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := origin.New(origin.Options{LargeFileSize: 256 << 20, Log: log})
	siteDone := make(chan error, 1)
	go func() { siteDone <- origin.Serve(ctx, ln, site) }()
	const token = "status-page-token"
	rs := relaytest.Start(t, relay.Config{
		Agents: []relay.AgentGrant{relaytest.Grant("nas", token, "stash.example.com")},
		Admin:  admin.Config{Listen: "127.0.0.1:0"},
	}, log.With("role", "relay"))
	ag, err := agent.New(agent.Config{
		Relay: rs.TunnelAddr().String(), RelayFingerprint: rs.TunnelFingerprint(), Token: token, Transport: "quic",
		Routes: []agent.Route{{Host: "stash.example.com", Service: "http://" + ln.Addr().String(), AllowUnauthenticated: true}},
	}, log.With("role", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan *protocol.Welcome, 1)
	ag.OnWelcome = func(w *protocol.Welcome) { up <- w }
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(ctx) }()
	defer func() {
		cancel()
		<-agentDone
		<-siteDone
	}()
	select {
	case <-up:
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not connect")
	}

	// A viewer reads a video at about 4 MB/s while the page is open.
	dl, dlCancel := context.WithCancel(ctx)
	defer dlCancel()
	go func() {
		req, _ := http.NewRequestWithContext(dl, "GET", "http://"+rs.HTTPAddr().String()+"/files/large.bin", nil)
		req.Host = "stash.example.com"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		buf := make([]byte, 64<<10)
		for dl.Err() == nil {
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				return
			}
			time.Sleep(16 * time.Millisecond)
		}
	}()

	bctx := newBrowser(t, ctx, browser, chromedp.WindowSize(1100, 700))
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+rs.AdminAddr()+"/")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	// Live: the route's throughput cell shows a rate above zero.
	live := `(() => { const c = document.querySelector('tr[data-route="stash.example.com"] .rate');
		return !!c && /[1-9][0-9.]* [KMG]B\/s/.test(c.textContent); })()`
	_, perr := chromedp.Run(bctx, chromedp.Poll[bool](live, chromedp.WithPollingTimeout(30*time.Second)))
	dom, err := chromedp.Run(bctx, chromedp.OuterHTML("html"))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if perr != nil {
		t.Errorf("the route's throughput did not update while a download ran: %v", perr)
	}
	for _, want := range []string{"● ready", "nas", "quic", "stash.example.com", "Agent sessions", "Routes", "Certificates", "self-signed", "Recent errors"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	if strings.Contains(dom, token) {
		t.Error("the status page shows the agent's token")
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("BURROW_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
