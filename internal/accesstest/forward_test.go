package accesstest

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
)

// gateway is a small forward-auth gateway that answers /api/verify as
// Authelia does: 200 with Remote-User and Remote-Groups for a request
// carrying its session cookie, else a 302 to its portal with the original
// URL, built from X-Forwarded-Proto, -Host and -Uri.
func gateway(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/verify", func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("authelia_session"); err == nil && c.Value == "alice-session" {
			w.Header().Set("Remote-User", "alice")
			w.Header().Set("Remote-Groups", "admins")
			w.WriteHeader(http.StatusOK)
			return
		}
		rd := r.Header.Get("X-Forwarded-Proto") + "://" + r.Header.Get("X-Forwarded-Host") + r.Header.Get("X-Forwarded-Uri")
		w.Header().Set("Set-Cookie", "authelia_flow=1; Path=/; HttpOnly")
		http.Redirect(w, r, "https://auth.example.com/?rd="+url.QueryEscape(rd)+"&rm="+r.Header.Get("X-Forwarded-Method"), http.StatusFound)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String() + "/api/verify"
}

// TestForwardAuth: the gateway's redirect reaches the visitor as it is; a
// request it lets through reaches the service with the gateway's identity
// headers, and identity headers the client sent itself never do.
func TestForwardAuth(t *testing.T) {
	verify := gateway(t)
	e := start(t, setup{access: fixed(&agent.Access{ForwardAuth: &agent.ForwardAuthAccess{URL: verify, CopyHeaders: []string{"Remote-User", "remote-groups"}},
		Bypass: agent.BypassAccess{Paths: []string{"/healthz"}}})})
	forged := http.Header{"Remote-User": {"admin"}, "Remote-Groups": {"admins"}}

	resp, _ := e.get(t, e.base+"/headers?x=1", forged)
	want := "https://auth.example.com/?rd=" + url.QueryEscape(e.base+"/headers?x=1") + "&rm=GET"
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != want {
		t.Fatalf("without the gateway's session: %d %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if resp.Header.Get("Set-Cookie") == "" {
		t.Error("the gateway's cookie did not reach the visitor")
	}
	if _, ok := e.site.Observations().Last("/headers"); ok {
		t.Fatal("a refused request reached the service")
	}

	// Bypassed: no gateway, but the forged headers are still dropped.
	e.get(t, e.base+"/healthz", forged)
	got, _ := e.site.Observations().Last("/healthz")
	if got.Header.Get("Remote-User") != "" || got.Header.Get("Remote-Groups") != "" {
		t.Errorf("bypassed request kept client-sent identity headers: %v", got.Header)
	}

	h := forged.Clone()
	h.Set("Cookie", "authelia_session=alice-session")
	resp, body := e.get(t, e.base+"/headers", h)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with the gateway's session: %d", resp.StatusCode)
	}
	var seen struct{ Header http.Header }
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	if u, g := seen.Header.Values("Remote-User"), seen.Header.Values("Remote-Groups"); len(u) != 1 || u[0] != "alice" || len(g) != 1 || g[0] != "admins" {
		t.Errorf("the service saw Remote-User %q, Remote-Groups %q; want only the gateway's", u, g)
	}
}
