package stash

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// stashLike answers /graphql the way the given kind of server would, and
// fails the test if the probe is not the unauthenticated query it should be.
func stashLike(t *testing.T, answer http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/graphql" ||
			r.Header.Get("Content-Type") != "application/json" || string(body) != probeQuery {
			t.Errorf("probe sent %s %s %q %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"), body)
		}
		if r.Header.Get("ApiKey") != "" || r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "" ||
			r.URL.Query().Get("apikey") != "" {
			t.Errorf("probe sent credentials")
		}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestProbeLogin(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer http.HandlerFunc
		want   LoginState
	}{
		{"stash with login", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", "FormBased")
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		}, LoginRequired},
		{"stash without login", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"data":{"version":{"version":"v0.28.1"}}}`)
		}, NoLogin},
		{"no graphql", http.NotFound, NotStash},
		{"html page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<!doctype html><html><body>Router admin</body></html>")
		}, NotStash},
		{"other graphql", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"errors":[{"message":"Cannot query field \"version\" on type \"Query\"."}],"data":null}`)
		}, NotStash},
		{"null version", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"data":{"version":null}}`)
		}, NotStash},
		{"redirect to a login page", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login?returnURL=%2Fgraphql", http.StatusFound)
		}, NotStash},
		{"tripwire fired", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Stash is exposed to the public internet without authentication", http.StatusForbidden)
		}, NotStash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := stashLike(t, tc.answer)
			for _, base := range []string{srv.URL, srv.URL + "/"} {
				got, err := ProbeLogin(context.Background(), srv.Client(), base)
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Fatalf("ProbeLogin(%s) = %v, want %v", base, got, tc.want)
				}
			}
		})
	}
}

func TestProbeLoginNilClient(t *testing.T) {
	srv := stashLike(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	})
	if got, err := ProbeLogin(context.Background(), nil, srv.URL); err != nil || got != LoginRequired {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestProbeLoginUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	if _, err := ProbeLogin(context.Background(), nil, url); err == nil {
		t.Fatal("no error from a closed port")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	live := stashLike(t, http.NotFound)
	if _, err := ProbeLogin(ctx, live.Client(), live.URL); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

func TestLoginHelp(t *testing.T) {
	for _, want := range []string{"Settings → Security → Authentication", "Username", "Password", "allow_unauthenticated: true"} {
		if !strings.Contains(LoginHelp, want) {
			t.Errorf("LoginHelp lacks %q", want)
		}
	}
	if LoginRequired.String() != "login required" || NoLogin.String() != "no login" || NotStash.String() != "not stash" {
		t.Fatal("login state names")
	}
}
