package accesstest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/oidctest"
)

// oauth2ProxyModule is the gateway TestOAuth2Proxy runs: the real
// oauth2-proxy, which `go install` builds from the Go module proxy (Go's
// build cache keeps the build for the next run). It is not a dependency of
// Burrow's module.
const oauth2ProxyModule = "github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6"

// installOAuth2Proxy builds oauth2-proxy into a temporary directory and
// returns the binary's path.
func installOAuth2Proxy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "install", oauth2ProxyModule)
	cmd.Dir = dir // outside Burrow's module, whose go.mod stays untouched
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	began := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", oauth2ProxyModule, err, out)
	}
	t.Logf("go install %s: %v", oauth2ProxyModule, time.Since(began).Round(time.Millisecond))
	return filepath.Join(dir, "oauth2-proxy")
}

// runOAuth2Proxy runs oauth2-proxy on ln until the test ends; args must
// include --http-address=fd:3. The listener is handed over as systemd hands
// one over (LISTEN_FDS), so its port is never free for another process in
// between; LISTEN_PID must be the process's own, which the shell's pid
// becomes with exec.
func runOAuth2Proxy(t *testing.T, bin string, ln *net.TCPListener, args ...string) {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	defer f.Close()
	argv := append([]string{"-c", `export LISTEN_PID=$$; exec "$0" "$@"`, bin}, args...)
	cmd := exec.Command("/bin/sh", argv...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("oauth2-proxy: %v", err)
		}
	})
	// The socket queues connections from the start: the first answer comes
	// once oauth2-proxy has read its provider's discovery document.
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + ln.Addr().String() + "/ping")
	if err != nil {
		t.Fatalf("oauth2-proxy did not start: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("oauth2-proxy /ping: %d %q", resp.StatusCode, body)
	}
}

// readmeBlock returns the fenced block of language lang that follows
// `<!-- check: name -->` in the README.
func readmeBlock(t *testing.T, name, lang string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- check: " + name + " -->"
	_, after, ok := strings.Cut(string(b), marker)
	fence := "```" + lang + "\n"
	if !ok || !strings.HasPrefix(strings.TrimLeft(after, "\n"), fence) {
		t.Fatalf("README.md has no %s followed by a %s block", marker, fence)
	}
	body, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimLeft(after, "\n"), fence), "\n```")
	if !ok {
		t.Fatalf("README.md: the block after %s does not end", marker)
	}
	return body + "\n"
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOAuth2Proxy: the forward-auth gateway is the real oauth2-proxy,
// signing visitors in at a real OpenID provider, with the README's
// oauth2-proxy.cfg. The relay asks its root (upstreams static://202,
// reverse_proxy, set_xauthrequest); its own pages are a route of their own
// host, auth.example.test, and its cookie is for the parent domain. A
// visitor without that cookie gets oauth2-proxy's answer (a script a 401, a
// browser a redirect to the provider) and never reaches the service; once
// signed in, the service sees the identity oauth2-proxy set and none the
// visitor forged; signing out at oauth2-proxy locks the site again.
func TestOAuth2Proxy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds oauth2-proxy")
	}
	bin := installOAuth2Proxy(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + ln.Addr().String()
	var authBase, issuer string
	e := start(t, setup{
		host:  "stash.example.test",
		extra: []agent.Route{{Host: "auth.example.test", Service: gw}},
		access: func(base string) *agent.Access {
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			authBase = "https://auth.example.test:" + u.Port()
			callback := authBase + "/oauth2/callback"
			op := oidctest.Start(t, "stash", "s3cret", callback)
			issuer = op.Issuer
			// The README's config, with the test's names, addresses and files.
			dir := t.TempDir()
			cookieSecret := make([]byte, 16)
			_, _ = rand.Read(cookieSecret)
			writeFile(t, filepath.Join(dir, "client-secret"), "s3cret")
			writeFile(t, filepath.Join(dir, "cookie-secret"), hex.EncodeToString(cookieSecret))
			cfg := strings.NewReplacer(
				"https://id.example.com", op.Issuer,
				"https://auth.example.com", authBase,
				"/etc/oauth2-proxy/", dir+"/",
				".example.com", ".example.test",
			).Replace(readmeBlock(t, "oauth2-proxy.cfg", "toml"))
			if strings.Contains(cfg, "example.com") {
				t.Fatalf("the README's oauth2-proxy.cfg has a name this test does not replace:\n%s", cfg)
			}
			writeFile(t, filepath.Join(dir, "oauth2-proxy.cfg"), cfg)
			// The flags take precedence: the listener, and the relay's port
			// for the way back.
			runOAuth2Proxy(t, bin, ln.(*net.TCPListener), "--config="+filepath.Join(dir, "oauth2-proxy.cfg"),
				"--http-address=fd:3", "--whitelist-domain=.example.test:*")
			// As the README's agent.yaml at home has it.
			return &agent.Access{ForwardAuth: &agent.ForwardAuthAccess{URL: gw + "/",
				CopyHeaders: []string{"X-Auth-Request-User", "X-Auth-Request-Email", "X-Auth-Request-Groups"}},
				Bypass: agent.BypassAccess{APIKey: true}}
		},
	})
	// Remote-User is not among copy_headers: it is dropped all the same.
	forged := http.Header{"X-Auth-Request-User": {"admin"}, "X-Auth-Request-Email": {"admin@example.test"}, "X-Auth-Request-Groups": {"admins"}, "Remote-User": {"admin"}}
	withForged := func(h http.Header) http.Header {
		h = h.Clone()
		for k, v := range forged {
			h[k] = v
		}
		return h
	}

	if resp, _ := e.get(t, e.base+"/headers", withForged(http.Header{"Accept": {"application/json"}})); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("script without a sign-in: %d, want oauth2-proxy's 401", resp.StatusCode)
	}
	// toProvider reports whether resp is oauth2-proxy's redirect to the
	// provider, with its callback on its own host.
	toProvider := func(resp *http.Response) bool {
		loc, err := url.Parse(resp.Header.Get("Location"))
		return resp.StatusCode == http.StatusFound && err == nil && strings.HasPrefix(loc.String(), issuer+"/") &&
			loc.Query().Get("redirect_uri") == authBase+"/oauth2/callback"
	}
	resp, _ := e.get(t, e.base+"/headers?x=1", withForged(page))
	if !toProvider(resp) {
		t.Fatalf("page without a sign-in: %d %q, want oauth2-proxy's redirect to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
	if csrf := resp.Cookies(); len(csrf) == 0 || csrf[0].Domain != "example.test" || !csrf[0].Secure {
		t.Fatalf("oauth2-proxy's CSRF cookie did not reach the visitor for the whole domain: %v", csrf)
	}
	if _, ok := e.site.Observations().Last("/headers"); ok {
		t.Fatal("a request without a sign-in reached the service")
	}
	// Stash's apps skip the sign-in with the API key; identity headers they
	// send are dropped all the same.
	if resp, _ := e.get(t, e.base+"/headers", withForged(http.Header{"ApiKey": {"k"}})); resp.StatusCode != http.StatusOK {
		t.Fatalf("with an API key: %d", resp.StatusCode)
	}
	if got, _ := e.site.Observations().Last("/headers"); got.Header.Get("X-Auth-Request-User") != "" || got.Header.Get("X-Auth-Request-Email") != "" || got.Header.Get("X-Auth-Request-Groups") != "" || got.Header.Get("Remote-User") != "" {
		t.Errorf("a request with an API key kept client-sent identity headers: %v", got.Header)
	}

	resp, _ = e.signIn(t, e.base+"/headers?x=1", oidctest.Member)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != e.base+"/headers?x=1" {
		t.Fatalf("after signing in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body := e.get(t, e.base+"/headers", withForged(page))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	var seen struct{ Header http.Header }
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	for name, want := range map[string][]string{
		"X-Auth-Request-User":   {oidctest.MemberSubject},
		"X-Auth-Request-Email":  {oidctest.MemberEmail},
		"X-Auth-Request-Groups": {oidctest.MemberGroup},
	} {
		if got := seen.Header.Values(name); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the service saw %s %q, want only oauth2-proxy's %q", name, got, want)
		}
	}
	if got := seen.Header.Values("Remote-User"); len(got) > 0 {
		t.Errorf("the service saw a forged Remote-User %q", got)
	}

	// Sign-out is oauth2-proxy's page on its own host; its cookie is gone
	// for the site too.
	if resp, _ := e.get(t, authBase+"/oauth2/sign_out", page); resp.StatusCode != http.StatusFound {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := e.get(t, e.base+"/headers", page); !toProvider(resp) {
		t.Fatalf("after signing out: %d %q, want the redirect to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
}
