package browsertest

import (
	"context"
	"fmt"
	"html"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"))
}

// chromium finds the browser. CI installs it; elsewhere the test says how.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (.ci/run installs it)")
	}
	t.Skip("chromium not installed: apt-get install chromium")
	return ""
}

// TestChromiumSeesStashThroughTunnel: over HTTPS with HTTP/2, under a /stash
// prefix, the page's base URL matches what the browser uses, the video's
// metadata loads (Range requests through the tunnel), and the
// graphql-transport-ws WebSocket is acknowledged and answers a ping.
func TestChromiumSeesStashThroughTunnel(t *testing.T) {
	browser := chromium(t)
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			site := origin.New(origin.Options{LargeFileSize: 1 << 20, Log: log})
			siteDone := make(chan error, 1)
			go func() { siteDone <- origin.Serve(ctx, ln, site) }()

			cert, _ := testutil.SelfSigned("localhost")
			certFile, keyFile := testutil.WritePEM(t, cert)
			rs := relaytest.Start(t, relay.Config{
				Public: relay.PublicConfig{HTTPS: "127.0.0.1:0"},
				TLS:    relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
				Agents: []relay.AgentGrant{relaytest.Grant("nas", "tok", "localhost")},
			}, log.With("role", "relay"))

			ag, err := agent.New(agent.Config{
				Relay: rs.TunnelAddr().String(), RelayFingerprint: rs.TunnelFingerprint(), Token: "tok", Transport: tr,
				Routes: []agent.Route{{Host: "localhost", Prefix: "/stash", Service: "http://" + ln.Addr().String(), AllowUnauthenticated: true}},
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

			port := rs.HTTPSAddr().(*net.TCPAddr).Port
			url := fmt.Sprintf("https://localhost:%d/stash/", port)
			// A real wait on what the page shows, not a virtual-time budget: a
			// WebSocket on a busy machine may take longer than any fixed budget.
			bctx := newBrowser(t, ctx, browser,
				chromedp.Flag("disable-quic", true), chromedp.Flag("ignore-certificate-errors", true))
			ready := `(() => { const t = (id) => (document.getElementById(id) || {}).textContent || "";
				return t("wslog").includes("pong") && t("vstatus").includes("ready") && t("proto") !== ""; })()`
			// The first call starts the browser and must have no deadline of its own.
			if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
				t.Fatalf("chromium: %v", err)
			}
			_, perr := chromedp.Run(bctx, chromedp.Poll[bool](ready, chromedp.WithPollingTimeout(45*time.Second)))
			out, err := chromedp.Run(bctx, chromedp.OuterHTML("html"))
			if err != nil {
				t.Fatalf("chromium: %v", err)
			}
			if perr != nil {
				t.Errorf("the page did not finish its checks: %v", perr)
			}
			dom := out
			base := fmt.Sprintf("https://localhost:%d/stash", port)
			checks := map[string]string{
				"base":    base,
				"seen":    base,
				"verdict": "match",
				"proto":   "h2",
				"wsstate": "open",
				"vstatus": "ready",
			}
			for id, want := range checks {
				if got := text(dom, id); !strings.Contains(got, want) {
					t.Errorf("#%s = %q, want it to contain %q", id, got, want)
				}
			}
			wslog := text(dom, "wslog")
			for _, want := range []string{"connection_ack", "pong", "graphql-transport-ws"} {
				if !strings.Contains(wslog, want) {
					t.Errorf("websocket log lacks %q:\n%s", want, wslog)
				}
			}
			if t.Failed() {
				t.Logf("DOM:\n%s", dom)
			}
		})
	}
}

// newBrowser starts headless Chromium at path for the test, with extra
// options, and returns the context its actions run in; it stops with the test.
func newBrowser(t *testing.T, ctx context.Context, path string, extra ...chromedp.ExecAllocatorOption) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, append(opts, extra...)...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx
}

// text returns the text inside the element with the given id.
func text(dom, id string) string {
	re := regexp.MustCompile(`(?s)id="` + regexp.QuoteMeta(id) + `"[^>]*>(.*?)</(?:td|span|div)>`)
	m := re.FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], " "))
}
