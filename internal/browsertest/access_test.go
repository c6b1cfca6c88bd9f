package browsertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/oidctest"
	"github.com/burrow-tunnel/burrow/internal/origin"
	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/relay"
)

// TestChromiumSignsInWithOIDC: a visitor of a route with OIDC sign-in is
// sent to the relay's sign-in page, signs in at a real OpenID provider,
// comes back to the page under /stash, whose WebSocket and video (Range
// requests) work through the tunnel; sign-out ends it.
func TestChromiumSignsInWithOIDC(t *testing.T) {
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
			srv := origin.New(origin.Options{LargeFileSize: 1 << 20, Log: log})
			siteDone := make(chan error, 1)
			go func() { siteDone <- origin.Serve(ctx, ln, srv) }()
			cert, _ := testutil.SelfSigned("localhost")
			certFile, keyFile := testutil.WritePEM(t, cert)
			rs := relaytest.Start(t, relay.Config{
				Public: relay.PublicConfig{HTTPS: "127.0.0.1:0"},
				TLS:    relay.TLSConfig{CertFile: certFile, KeyFile: keyFile},
				Agents: []relay.AgentGrant{relaytest.Grant("nas", "tok", "localhost")},
			}, log.With("role", "relay"))
			port := rs.HTTPSAddr().(*net.TCPAddr).Port
			base := fmt.Sprintf("https://localhost:%d/stash", port)
			op := oidctest.Start(t, "burrow", "s3cret", base+"/.burrow/callback")
			ag, err := agent.New(agent.Config{
				Relay: rs.TunnelAddr().String(), RelayFingerprint: rs.TunnelFingerprint(), Token: "tok", Transport: tr,
				Routes: []agent.Route{{Host: "localhost", Prefix: "/stash", Service: "http://" + ln.Addr().String(), AllowUnauthenticated: true,
					Access: &agent.Access{OIDC: &agent.OIDCAccess{Issuer: op.Issuer, ClientID: "burrow", ClientSecret: "s3cret",
						Scopes: []string{"email", "profile"}, AllowedGroups: []string{oidctest.MemberGroup}}}}},
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

			bctx := newBrowser(t, ctx, browser,
				chromedp.Flag("disable-quic", true), chromedp.Flag("ignore-certificate-errors", true))
			if err := chromedp.Do(bctx, chromedp.Navigate(base+"/")); err != nil {
				t.Fatalf("chromium: %v", err)
			}
			do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				actx, acancel := context.WithTimeout(bctx, 45*time.Second)
				defer acancel()
				if err := chromedp.Do(actx, steps...); err != nil {
					loc, _ := chromedp.Run(bctx, chromedp.Location())
					html, _ := chromedp.Run(bctx, chromedp.OuterHTML("html"))
					t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, html)
				}
			}
			text := func(id chromedp.ID) string {
				s, _ := chromedp.Run(bctx, chromedp.Text(id))
				return s
			}
			do("the relay's sign-in page", chromedp.WaitVisible(chromedp.ID("continue")))
			if got := text("site"); got != "localhost/stash" {
				t.Errorf("sign-in page names %q, want localhost/stash", got)
			}
			do("the provider's login form", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.ID("username")))
			do("signing in", chromedp.SendKeys(chromedp.ID("username"), oidctest.Member),
				chromedp.SendKeys(chromedp.ID("password"), oidctest.Password), chromedp.Submit(chromedp.ID("password")))
			ready := `(() => { const t = (id) => (document.getElementById(id) || {}).textContent || "";
				return t("wslog").includes("pong") && t("vstatus").includes("ready"); })()`
			// The redirects back from the provider may cut a poll short: poll anew on the page it lands on.
			var perr error
			for range 5 {
				if _, perr = chromedp.Run(bctx, chromedp.Poll[bool](ready, chromedp.WithPollingTimeout(45*time.Second))); perr == nil || !strings.Contains(perr.Error(), "navigated") {
					break
				}
			}
			if perr != nil {
				html, _ := chromedp.Run(bctx, chromedp.OuterHTML("html"))
				t.Fatalf("the page's WebSocket and video after signing in: %v\n%s", perr, html)
			}
			if loc, _ := chromedp.Run(bctx, chromedp.Location()); loc != base+"/" {
				t.Errorf("back at %s, want %s/", loc, base)
			}
			if got, ok := srv.Observations().Last("/scene/1/stream"); !ok || got.Header.Get("Range") == "" {
				t.Errorf("the video was not fetched with Range requests: %v", got.Header)
			}
			do("sign-out", chromedp.Navigate(base+"/.burrow/signout"), chromedp.WaitVisible(chromedp.ID("signout")),
				chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("msg")))
			do("after sign-out", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("continue")))
			if got := text("title"); !strings.Contains(got, "Sign in") {
				t.Errorf("after signing out the page shows %q, want the sign-in page", got)
			}
		})
	}
}
