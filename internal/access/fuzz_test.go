package access

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

type protocolPolicy = protocol.AccessPolicy

func testKeys(t testing.TB) *Keys {
	k, err := NewKeys([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// FuzzOpenCookie: any cookie value a visitor sends is refused unless the
// relay sealed it for this route, and never panics the decoder.
func FuzzOpenCookie(f *testing.F) {
	k := testKeys(f)
	good, _ := k.SessionCookieFor("h", "/p", Session{ID: "i", Subject: "s", Expires: time.Now().Add(time.Hour).Unix()})
	f.Add(good.Value)
	f.Add("")
	f.Add("AAAA")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, v string) {
		var s Session
		err := k.open("session|h|/p", v, &s)
		if err == nil && (s.ID != "i" || s.Subject != "s") {
			t.Fatalf("a cookie the relay did not seal opened: %q", v)
		}
		if k.open("session|h|/other", v, &s) == nil {
			t.Fatal("a cookie opened for another route")
		}
	})
}

// FuzzCompile: whatever policy an agent sends, decoding and compiling it
// fails cleanly or yields a guard.
func FuzzCompile(f *testing.F) {
	f.Add(`{"allow":["203.0.113.0/24"],"deny":["::1"],"bypass":{"apikey":true,"paths":["/healthz"]}}`)
	f.Add(`{"oidc":{"issuer":"https://a","client_id":"c","allowed_groups":["g"]},"login_limit":{"failures":5,"window_ms":600000,"block_ms":900000}}`)
	f.Add(`{"forward_auth":{"url":"http://127.0.0.1:9091/api/verify","copy_headers":["Remote-User"]},"rate_limit":{"per_second":1,"burst":1}}`)
	f.Add(`{"allow":["x"],"login_limit":{"failures":-1}}`)
	deps := &Deps{Keys: testKeys(f), Client: NewClient(), Refuse: func(http.ResponseWriter, *http.Request, Refusal) {}}
	f.Fuzz(func(t *testing.T, raw string) {
		var p protocol.AccessPolicy
		if json.Unmarshal([]byte(raw), &p) != nil {
			return
		}
		g, err := Compile(&p, "h", "/p", deps)
		if err == nil && g == nil {
			t.Fatal("no guard and no error")
		}
	})
}

// FuzzSafeReturn: the return URL after sign-in is always a path of the route.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/p/", "/p/scene?x=1", "https://evil/", "//evil", "/\\evil", "/p/.burrow/signout", "/pp", "/p", "/p/../x"} {
		f.Add(s)
	}
	g := &Guard{host: "h", prefix: "/p"}
	o := &oidcSignIn{g: g}
	f.Fuzz(func(t *testing.T, rd string) {
		got := o.safeReturn(rd)
		u, _ := url.Parse(got)
		if strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n\t") || u == nil || (u.Path != "/p" && !strings.HasPrefix(path.Clean(u.Path)+"/", "/p/")) {
			t.Fatalf("safeReturn(%q) = %q", rd, got)
		}
	})
}
