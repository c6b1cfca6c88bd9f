package accesstest

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/internal/access"
	"github.com/burrow-tunnel/burrow/internal/oidctest"
)

// oidcSetup is a route whose visitors sign in at a real OpenID provider,
// which it starts once the relay's URL (the redirect URI) is known.
func oidcSetup(t *testing.T, transport string, groups []string) setup {
	return setup{transport: transport, access: func(base string) *agent.Access {
		op := oidctest.Start(t, "burrow", "s3cret", base+"/.burrow/callback")
		return &agent.Access{OIDC: &agent.OIDCAccess{Issuer: op.Issuer, ClientID: "burrow", ClientSecret: "s3cret",
			Scopes: []string{"email", "profile"}, AllowedGroups: groups}}
	}}
}

var hiddenID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signIn walks the sign-in from a page of the route to the provider's form
// and back, as a browser does, and returns the last answer.
func (e *env) signIn(t *testing.T, start, user string) (*http.Response, *http.Cookie) {
	t.Helper()
	var sess *http.Cookie
	resp, _ := e.get(t, start, page)
	for range 10 {
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || loc == "" {
			break
		}
		u, err := resp.Request.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(u.Path, "/.burrow/signin") {
			u.Path = strings.TrimSuffix(u.Path, "signin") + "start" // the page's button
		}
		var body string
		resp, body = e.get(t, u.String(), page)
		for _, c := range resp.Cookies() {
			if c.Name == access.SessionCookie {
				sess = c
			}
		}
		if m := hiddenID.FindStringSubmatch(body); m != nil { // the provider's login form
			form := url.Values{"id": {m[1]}, "username": {user}, "password": {oidctest.Password}}
			resp, _ = e.do(t, http.MethodPost, resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"}).String(),
				http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
		}
	}
	return resp, sess
}

// TestOIDCSignIn: through the tunnel, a visitor signs in at a real provider
// and comes back to the page asked for; the cookie is Secure, HttpOnly,
// SameSite=Lax and scoped to the prefix, never reaches the service, and
// ends with sign-out even when a copy is replayed; a user outside the
// allowed groups gets 403; forged, expired and open-redirect tricks fail.
func TestOIDCSignIn(t *testing.T) {
	e := start(t, oidcSetup(t, "quic", []string{oidctest.MemberGroup}))

	resp, _ := e.do(t, http.MethodPost, e.base+"/graphql", nil, strings.NewReader(`{}`))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("script without a sign-in: %d", resp.StatusCode)
	}
	resp, _ = e.get(t, e.base+"/scenes?q=1", page)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != "/stash/.burrow/signin?rd=%2Fstash%2Fscenes%3Fq%3D1" {
		t.Fatalf("page without a sign-in: %d %q", resp.StatusCode, loc)
	}
	if resp, body := e.get(t, e.base+"/.burrow/signin?rd=%2Fstash%2F", page); resp.StatusCode != http.StatusOK || !strings.Contains(body, "localhost/stash") {
		t.Fatalf("sign-in page: %d %q", resp.StatusCode, body)
	}

	resp, sess := e.signIn(t, e.base+"/scenes?q=1", oidctest.Member)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RequestURI() != "/stash/scenes?q=1" {
		t.Fatalf("after signing in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if sess == nil {
		t.Fatal("no session cookie")
	}
	if !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/stash/" || sess.MaxAge <= 0 {
		t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/stash/, a lifetime", sess)
	}
	resp, _ = e.get(t, e.base+"/scene/1/stream", http.Header{"Range": {"bytes=100-199"}})
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("seek after signing in: %d", resp.StatusCode)
	}
	got, _ := e.site.Observations().Last("/scene/1/stream")
	if strings.Contains(got.Header.Get("Cookie"), "__burrow") {
		t.Errorf("the service got Burrow's cookie: %q", got.Header.Get("Cookie"))
	}

	// Forged and expired cookies open nothing.
	keys, err := access.LoadKeys(e.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := keys.SessionCookieFor("localhost", "/stash", access.Session{ID: "x", Subject: "id1", Expires: time.Now().Add(-time.Minute).Unix()})
	otherRoute, _ := keys.SessionCookieFor("localhost", "/other", access.Session{ID: "y", Subject: "id1", Expires: time.Now().Add(time.Hour).Unix()})
	jar := e.client.Jar
	e.client.Jar = nil // only the cookie under test
	for name, value := range map[string]string{"forged": "AAAA" + sess.Value[4:], "expired": expired.Value, "other route's": otherRoute.Value} {
		resp, _ := e.do(t, http.MethodGet, e.base+"/scene/1/stream", http.Header{"Cookie": {access.SessionCookie + "=" + value}}, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d, want 401", name, resp.StatusCode)
		}
	}
	e.client.Jar = jar

	// Sign-out takes the form's token (no cross-site sign-out) and ends
	// the session, a replayed copy of the cookie included.
	_, body := e.get(t, e.base+"/.burrow/signout", page)
	m := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("sign-out page has no token: %q", body)
	}
	post := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if resp, _ := e.do(t, http.MethodPost, e.base+"/.burrow/signout", post, strings.NewReader("token=nope")); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without the token: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, http.MethodPost, e.base+"/.burrow/signout", post, strings.NewReader("token="+url.QueryEscape(m[1]))); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	e.client.Jar = nil
	resp, _ = e.do(t, http.MethodGet, e.base+"/scene/1/stream", http.Header{"Cookie": {access.SessionCookie + "=" + sess.Value}}, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed cookie after sign-out: %d", resp.StatusCode)
	}
	e.client.Jar = jar

	// The return URL stays on this route.
	for _, rd := range []string{"https://evil.example/", "//evil.example/", "/\\evil.example", "/other/", "/stash/.burrow/signout"} {
		e.client.Jar.SetCookies(resp.Request.URL, []*http.Cookie{{Name: access.SessionCookie, Value: "", MaxAge: -1, Path: "/stash/"}})
		resp, _ := e.signIn(t, e.base+"/.burrow/start?rd="+url.QueryEscape(rd), oidctest.Member)
		if resp.Request.URL.Host != strings.TrimPrefix(strings.TrimSuffix(e.base, "/stash"), "https://") || resp.Request.URL.Path != "/stash/" {
			t.Errorf("rd=%q led to %s", rd, resp.Request.URL)
		}
	}
}

// TestOIDCOutsider: a user the provider signs in but who is not in an
// allowed group gets 403, and no session.
func TestOIDCOutsider(t *testing.T) {
	e := start(t, oidcSetup(t, "tcp", []string{oidctest.MemberGroup}))
	resp, _ := e.signIn(t, e.base+"/", oidctest.Outsider)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("outsider: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp, _ := e.get(t, e.base+"/scene/1/stream", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("outsider's next request: %d", resp.StatusCode)
	}
}
