package origin

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestLogin(t *testing.T) {
	s := New(Options{RequireLogin: true, APIKey: "secret", Username: "u", Password: "p"})

	// The API without credentials: 401 FormBased.
	w := graphQL(t, s, "{ version { version } }", nil)
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != "FormBased" {
		t.Errorf("POST /graphql without credentials = %d %q, want 401 FormBased", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	for name, hdr := range map[string]map[string]string{
		"ApiKey header":  {"ApiKey": "secret"},
		"session cookie": {"Cookie": "session=abc"},
	} {
		if w := graphQL(t, s, "{ version { version } }", hdr); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), Version) {
			t.Errorf("POST /graphql with %s = %d %s", name, w.Code, w.Body)
		}
	}
	if w := graphQL(t, s, "{ version { version } }", map[string]string{"ApiKey": "wrong"}); w.Code != http.StatusUnauthorized {
		t.Errorf("POST /graphql with a wrong key = %d, want 401", w.Code)
	}

	cases := []struct {
		target, prefix string
		hdr            map[string]string
		code           int
		location       string
	}{
		{target: "/", code: http.StatusFound, location: "/login?returnURL=%2F"},
		{target: "/scenes?sortby=date", prefix: "/stash", code: http.StatusFound, location: "/stash/login?returnURL=%2Fstash%2Fscenes%3Fsortby%3Ddate"},
		{target: "/scene/1/stream", code: http.StatusFound, location: "/login?returnURL=%2Fscene%2F1%2Fstream"},
		{target: "/scene/1/stream?apikey=secret", code: http.StatusOK},
		{target: "/scene/1/stream?apikey=nope", code: http.StatusFound},
		{target: "/files/large.bin", code: http.StatusUnauthorized},
		{target: "/stream.mp4", code: http.StatusUnauthorized},
		{target: "/files/small.bin", hdr: map[string]string{"ApiKey": "secret"}, code: http.StatusOK},
		{target: "/index.html", code: http.StatusFound},
		{target: "/healthz", code: http.StatusOK},
		{target: "/login", code: http.StatusOK},
		{target: "/login?returnURL=%2Fscenes", prefix: "/stash", code: http.StatusOK},
		{target: "/", hdr: map[string]string{"Cookie": "session=x"}, code: http.StatusOK},
	}
	for _, c := range cases {
		hdr := map[string]string{"X-Forwarded-Prefix": c.prefix}
		for k, v := range c.hdr {
			hdr[k] = v
		}
		w := do(t, s, http.MethodGet, c.target, nil, hdr)
		if w.Code != c.code {
			t.Errorf("GET %s (prefix %q) = %d, want %d", c.target, c.prefix, w.Code, c.code)
		}
		if c.location != "" && w.Header().Get("Location") != c.location {
			t.Errorf("GET %s (prefix %q): Location %q, want %q", c.target, c.prefix, w.Header().Get("Location"), c.location)
		}
		if c.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") != "FormBased" {
			t.Errorf("GET %s: 401 without WWW-Authenticate: FormBased", c.target)
		}
	}

	// The login form posts back under the prefix and keeps the return URL.
	w = do(t, s, http.MethodGet, "/login?returnURL=%2Fstash%2Fscenes", nil, map[string]string{"X-Forwarded-Prefix": "/stash"})
	if body := w.Body.String(); !strings.Contains(body, `action="/stash/login"`) || !strings.Contains(body, `value="/stash/scenes"`) {
		t.Errorf("login page:\n%s", body)
	}

	post := func(form url.Values) *http.Response {
		w := do(t, s, http.MethodPost, "/login", strings.NewReader(form.Encode()),
			map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Prefix": "/stash"})
		return w.Result()
	}
	resp := post(url.Values{"username": {"u"}, "password": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("bad password: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp = post(url.Values{"username": {"u"}, "password": {"p"}, "returnURL": {"/stash/scenes"}})
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/stash/scenes" {
		t.Errorf("login: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			session = c
		}
	}
	if session == nil || session.Value == "" {
		t.Fatalf("login set no session cookie: %v", resp.Cookies())
	}
	if w := graphQL(t, s, "{ version { version } }", map[string]string{"Cookie": session.String()}); w.Code != http.StatusOK {
		t.Errorf("with the issued cookie: %d", w.Code)
	}
	resp = post(url.Values{"username": {"u"}, "password": {"p"}, "returnURL": {"//evil.example/"}})
	if resp.Header.Get("Location") != "/stash/" {
		t.Errorf("off-site returnURL followed: %q", resp.Header.Get("Location"))
	}

	// Without RequireLogin nothing needs credentials.
	if w := graphQL(t, New(Options{APIKey: "secret"}), "{ version { version } }", nil); w.Code != http.StatusOK {
		t.Errorf("no login set: %d", w.Code)
	}
}
