package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger writes the origin's log to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testOrigin is a Server served by Serve on a loopback listener.
type testOrigin struct {
	*Server
	URL    string // http://127.0.0.1:port
	Addr   string // 127.0.0.1:port
	Client *http.Client
}

// startOrigin serves New(o) on 127.0.0.1 until the test ends, and checks that
// Serve then returns promptly and cleanly.
func startOrigin(t *testing.T, o Options) *testOrigin {
	t.Helper()
	if o.Log == nil {
		o.Log = testLogger(t)
	}
	s := New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, s) }()
	tr := &http.Transport{}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
		tr.CloseIdleConnections()
	})
	return &testOrigin{
		Server: s,
		URL:    "http://" + ln.Addr().String(),
		Addr:   ln.Addr().String(),
		Client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// do runs one request through the handler without a network.
func do(t *testing.T, h http.Handler, method, target string, body io.Reader, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "127.0.0.1:40000" // the agent, on the same host as Stash
	for k, v := range hdr {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func graphQL(t *testing.T, h http.Handler, query string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"query": query})
	if hdr == nil {
		hdr = map[string]string{}
	}
	hdr["Content-Type"] = "application/json"
	return do(t, h, http.MethodPost, "/graphql", bytes.NewReader(b), hdr)
}

func TestHealthz(t *testing.T) {
	for _, o := range []Options{{}, {RequireLogin: true, APIKey: "k"}, {Tripwire: true}} {
		s := New(o)
		w := do(t, s, http.MethodGet, "/healthz", nil, map[string]string{"X-Forwarded-For": "203.0.113.1"})
		if w.Code != http.StatusOK || w.Body.String() != "ok" {
			t.Errorf("%+v: /healthz = %d %q, want 200 ok", o, w.Code, w.Body.String())
		}
	}
}

func TestGraphQLVersion(t *testing.T) {
	s := New(Options{})
	w := graphQL(t, s, "{ version { version } }", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	want := `{"data":{"version":{"version":"v0.27.0-burrow-demo"}}}`
	if got := strings.TrimSpace(w.Body.String()); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
}

// TestGraphQLURLs checks that URLs are built like Stash builds them.
func TestGraphQLURLs(t *testing.T) {
	cases := []struct {
		name string
		hdr  map[string]string
		base string
	}{
		{"direct", map[string]string{"Host": "127.0.0.1:9999"}, "http://127.0.0.1:9999"},
		{"https", map[string]string{"Host": "stash.example.com", "X-Forwarded-Proto": "https"}, "https://stash.example.com"},
		{"https prefix", map[string]string{"Host": "stash.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/stash"}, "https://stash.example.com/stash"},
		{"proto not exactly https", map[string]string{"Host": "stash.example.com", "X-Forwarded-Proto": "HTTPS"}, "http://stash.example.com"},
		{"x-forwarded-host ignored", map[string]string{"Host": "internal:9999", "X-Forwarded-Host": "stash.example.com"}, "http://internal:9999"},
		{"trailing slash kept", map[string]string{"Host": "h", "X-Forwarded-Prefix": "/stash/"}, "http://h/stash/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(Options{})
			w := graphQL(t, s, "{ findScene(id: 1) { paths { stream screenshot } } }", c.hdr)
			var got struct {
				Data struct {
					FindScene struct {
						Paths struct{ Stream, Screenshot string }
					}
				}
			}
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("%d %s: %v", w.Code, w.Body, err)
			}
			p := got.Data.FindScene.Paths
			if p.Stream != c.base+"/scene/1/stream" || p.Screenshot != c.base+"/scene/1/screenshot" {
				t.Errorf("paths = %+v, want base %s", p, c.base)
			}
		})
	}

	s := New(Options{ExternalHost: "https://media.example.org"})
	w := graphQL(t, s, "{ findScene(id: 1) { paths { stream } } }", map[string]string{"X-Forwarded-Prefix": "/stash"})
	if !strings.Contains(w.Body.String(), `"https://media.example.org/stash/scene/1/stream"`) {
		t.Errorf("external host: %s", w.Body)
	}
}

func TestGraphQLMethods(t *testing.T) {
	s := New(Options{})
	if w := do(t, s, http.MethodHead, "/graphql", nil, nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("HEAD /graphql = %d, want 405", w.Code)
	}
	if w := do(t, s, http.MethodPut, "/graphql", nil, nil); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT /graphql = %d, want 405", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/graphql?query=%7Bversion%7D", nil, nil); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), Version) {
		t.Errorf("GET /graphql?query = %d %s", w.Code, w.Body)
	}
	if w := do(t, s, http.MethodPost, "/graphql", strings.NewReader("not json"), nil); w.Code != http.StatusBadRequest {
		t.Errorf("POST bad JSON = %d, want 400", w.Code)
	}
}

func TestSceneStream(t *testing.T) {
	s := New(Options{})
	w := do(t, s, http.MethodGet, "/scene/1/stream", nil, nil)
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), demoVideo) {
		t.Fatalf("GET = %d, %d bytes, want 200 with the %d-byte video", w.Code, w.Body.Len(), len(demoVideo))
	}
	if ct := w.Header().Get("Content-Type"); ct != "video/mp4" {
		t.Errorf("Content-Type = %q", ct)
	}
	if w.Header().Get("Accept-Ranges") != "bytes" {
		t.Errorf("no Accept-Ranges")
	}

	w = do(t, s, http.MethodGet, "/scene/1/stream", nil, map[string]string{"Range": "bytes=100-199"})
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), demoVideo[100:200]) {
		t.Errorf("Range = %d, %d bytes, want 206 with 100", w.Code, w.Body.Len())
	}
	if cr, want := w.Header().Get("Content-Range"), "bytes 100-199/"; !strings.HasPrefix(cr, want) {
		t.Errorf("Content-Range = %q", cr)
	}

	w = do(t, s, http.MethodGet, "/scene/1/stream", nil, map[string]string{"Range": "bytes=999999999-"})
	if w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("bad Range = %d, want 416", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/scene/2/stream", nil, nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown scene = %d, want 404", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/scene/1/screenshot", nil, nil); w.Code != http.StatusOK || w.Header().Get("Content-Type") != "image/jpeg" {
		t.Errorf("screenshot = %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if len(demoVideo) > 300<<10 || !bytes.Equal(demoVideo[4:8], []byte("ftyp")) {
		t.Errorf("demo video: %d bytes, header %q", len(demoVideo), demoVideo[:8])
	}
}

func TestGeneratedFiles(t *testing.T) {
	const size = 3<<20 + 5
	s := New(Options{LargeFileSize: size})

	w := do(t, s, http.MethodGet, "/files/large.bin", nil, nil)
	if w.Code != http.StatusOK || int64(w.Body.Len()) != size {
		t.Fatalf("GET = %d, %d bytes", w.Code, w.Body.Len())
	}
	if w.Header().Get("Content-Length") != "3145733" {
		t.Errorf("Content-Length = %q", w.Header().Get("Content-Length"))
	}
	if got, want := sha256Sum(w.Body.Bytes()), LargeFileSHA256(size); got != want {
		t.Errorf("body hash differs from LargeFileSHA256")
	}
	etag := w.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	w = do(t, s, http.MethodGet, "/files/large.bin", nil, map[string]string{"Range": "bytes=1000001-2000003"})
	want := make([]byte, 1000003)
	if _, err := NewLargeFile(size).ReadAt(want, 1000001); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusPartialContent || !bytes.Equal(w.Body.Bytes(), want) {
		t.Errorf("Range = %d, %d bytes, want 206 and the matching bytes", w.Code, w.Body.Len())
	}
	w = do(t, s, http.MethodGet, "/files/large.bin", nil, map[string]string{"Range": "bytes=-10"})
	if w.Code != http.StatusPartialContent || w.Header().Get("Content-Range") != "bytes 3145723-3145732/3145733" {
		t.Errorf("suffix Range = %d %q", w.Code, w.Header().Get("Content-Range"))
	}
	if w := do(t, s, http.MethodGet, "/files/large.bin", nil, map[string]string{"Range": "bytes=3145733-"}); w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("Range past the end = %d, want 416", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/files/large.bin", nil, map[string]string{"If-None-Match": etag}); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match = %d, want 304", w.Code)
	}

	w = do(t, s, http.MethodGet, "/files/small.bin", nil, nil)
	if w.Code != http.StatusOK || w.Body.Len() != SmallFileSize || sha256Sum(w.Body.Bytes()) != LargeFileSHA256(SmallFileSize) {
		t.Errorf("small.bin = %d, %d bytes", w.Code, w.Body.Len())
	}
}

func TestHeaders(t *testing.T) {
	o := startOrigin(t, Options{})
	req, _ := http.NewRequest(http.MethodGet, o.URL+"/headers?a=b", nil)
	req.Host = "stash.example.com"
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("X-Forwarded-Prefix", "/stash")
	resp, err := o.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Request
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Host != "stash.example.com" || got.RequestURI != "/headers?a=b" || got.Method != "GET" || got.Proto != "HTTP/1.1" {
		t.Errorf("got %+v", got)
	}
	if got.Header.Get("X-Forwarded-For") != "198.51.100.7" || got.Header.Get("X-Forwarded-Prefix") != "/stash" {
		t.Errorf("headers %v", got.Header)
	}
	if host, _, _ := net.SplitHostPort(got.RemoteAddr); host != "127.0.0.1" {
		t.Errorf("RemoteAddr %q", got.RemoteAddr)
	}
	last, ok := o.Observations().Last("/headers")
	if !ok || last.Header.Get("X-Forwarded-Prefix") != "/stash" {
		t.Errorf("Observations().Last = %+v, %v", last, ok)
	}
}

func TestIndexPage(t *testing.T) {
	s := New(Options{})
	hdr := map[string]string{
		"Host": "stash.example.com", "X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/stash",
		"X-Real-IP": "198.51.100.7", "X-Forwarded-For": "198.51.100.7", "X-Forwarded-Port": "443",
	}
	w := do(t, s, http.MethodGet, "/", nil, hdr)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	for _, want := range []string{
		"<title>Burrow demo</title>",
		`src="https://stash.example.com/stash/scene/1/stream"`,
		`poster="https://stash.example.com/stash/scene/1/screenshot"`,
		`const PREFIX = "/stash";`,
		"198.51.100.7",
		"graphql-transport-ws",
		`<div class="hop"><b>browser</b><span>198.51.100.7</span></div>`,
		`<div class="arrow">HTTPS →<br>public request</div>`,
		`<div class="hop"><b>relay</b><span>https://stash.example.com/stash/</span></div>`,
		`<b>tunnel</b>`, `<b>agent</b>`, `<b>service</b>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script src") || strings.Contains(body, "<link") {
		t.Errorf("page loads external resources")
	}

	// Stash does not strip a prefix: an unstripped path is the index page.
	w = do(t, s, http.MethodGet, "/stash/scene/1/stream", nil, nil)
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Errorf("unstripped prefix = %d %q, want the index page", w.Code, w.Header().Get("Content-Type"))
	}
	if w := do(t, s, http.MethodGet, "/missing.js", nil, nil); w.Code != http.StatusNotFound {
		t.Errorf("/missing.js = %d, want 404", w.Code)
	}
}

func TestXForwardedFor(t *testing.T) {
	s := New(Options{})
	for xff, want := range map[string]int{
		"203.0.113.5":               http.StatusOK,
		"203.0.113.5, 10.0.0.1":     http.StatusOK,
		"2001:db8::1, 10.0.0.1":     http.StatusOK,
		"203.0.113.5,10.0.0.1":      http.StatusBadRequest, // Stash splits on ", "
		"unknown":                   http.StatusBadRequest,
		"203.0.113.5 , 10.0.0.1, x": http.StatusBadRequest,
	} {
		if w := do(t, s, http.MethodGet, "/headers", nil, map[string]string{"X-Forwarded-For": xff}); w.Code != want {
			t.Errorf("X-Forwarded-For %q: %d, want %d", xff, w.Code, want)
		}
	}
	// X-Forwarded-For from a public peer is refused.
	r := httptest.NewRequest(http.MethodGet, "/headers", nil)
	r.RemoteAddr = "198.51.100.1:1234"
	r.Header.Set("X-Forwarded-For", "10.0.0.1")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest {
		t.Errorf("public peer with X-Forwarded-For: %d, want 400", w.Code)
	}
}

func TestTripwire(t *testing.T) {
	s := New(Options{Tripwire: true})
	if w := do(t, s, http.MethodGet, "/", nil, map[string]string{"X-Forwarded-For": "192.168.1.20"}); w.Code != http.StatusOK {
		t.Fatalf("LAN client = %d, want 200", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/", nil, nil); w.Code != http.StatusOK {
		t.Fatalf("no X-Forwarded-For = %d, want 200", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/", nil, map[string]string{"X-Forwarded-For": "203.0.113.9"}); w.Code != http.StatusForbidden {
		t.Fatalf("public client = %d, want 403", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/", nil, nil); w.Code != http.StatusForbidden {
		t.Errorf("after the tripwire = %d, want 403 for everyone", w.Code)
	}
	if w := do(t, s, http.MethodGet, "/healthz", nil, nil); w.Code != http.StatusOK {
		t.Errorf("/healthz after the tripwire = %d", w.Code)
	}
	if got := s.Observations().Tripped(); got != "203.0.113.9" {
		t.Errorf("Tripped() = %q", got)
	}

	// With a login the tripwire never fires.
	s = New(Options{Tripwire: true, RequireLogin: true, APIKey: "k"})
	if w := do(t, s, http.MethodGet, "/", nil, map[string]string{"X-Forwarded-For": "203.0.113.9", "ApiKey": "k"}); w.Code != http.StatusOK {
		t.Errorf("with login = %d, want 200", w.Code)
	}
}

func TestServeStopsEverything(t *testing.T) {
	s := New(Options{Log: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, s) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/stream.mp4")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ws := dialGraphQL(t, ctx, "ws://"+ln.Addr().String()+"/graphql")
	defer ws.CloseNow()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return with a transcode and a websocket open")
	}
	if open, _ := s.Observations().WebSockets(); open != 0 {
		t.Errorf("%d websockets still open", open)
	}
	for _, tc := range s.Observations().Transcodes() {
		if tc.End.IsZero() {
			t.Errorf("transcode still running")
		}
	}

	// Serve reports a listener that fails.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2.Close()
	if err := Serve(context.Background(), ln2, s); err == nil || errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve on a closed listener = %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{1000: "1000 B", 1024: "1 KiB", 64 << 20: "64 MiB", 3<<20 + 512<<10: "3.5 MiB", 1 << 30: "1 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
