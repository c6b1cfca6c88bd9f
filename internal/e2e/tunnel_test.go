package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/burrow-tunnel/burrow/internal/origin"
)

// TestTunnel checks, over each transport, what a browser using Stash through
// the relay needs: pages, GraphQL, the websocket, big files whole and by
// Range, big chunked uploads, unbuffered streaming, the forwarded headers and
// prefix routes.
func TestTunnel(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			t.Run("Page", e.testPage)
			t.Run("GraphQL", e.testGraphQL)
			t.Run("WebSocket", e.testWebSocket)
			t.Run("LargeFile", e.testLargeFile)
			t.Run("Range", e.testRange)
			t.Run("ChunkedUpload", e.testChunkedUpload)
			t.Run("Streaming", e.testStreaming)
			t.Run("Headers", e.testHeaders)
			t.Run("Prefix", e.testPrefix)
			t.Run("PausedVideos", e.testPausedVideos)
		})
	}
}

// testPausedVideos pauses several videos, whose data then waits in the
// relay for viewers who do not read it, and loads a page meanwhile: what
// waits for one viewer must not hold up the tunnel's other streams.
func (e *env) testPausedVideos(t *testing.T) {
	const videos = 8
	for range videos {
		defer e.startPausedDownload(t)()
	}
	time.Sleep(2 * time.Second) // the tunnel fills up behind them
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		status, _, err := e.get(ctx, "/", nil)
		cancel()
		if err != nil || status != http.StatusOK {
			t.Fatalf("GET / %d with %d videos paused: %d, %v after %v", i, videos, status, err, time.Since(start).Round(time.Millisecond))
		}
	}
}

func (e *env) testPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/"), nil)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d %q", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	if !bytes.Contains(bytes.ToLower(body), []byte("<html")) {
		t.Errorf("body is not an HTML page: %.200q", body)
	}
}

// graphQL posts query to path and decodes the answer's data.
func (e *env) graphQL(t *testing.T, path, host, query string, data any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, _ := json.Marshal(map[string]string{"query": query})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url(path), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if host != "" {
		req.Host = host
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %q", path, res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST %s: Content-Type %q", path, ct)
	}
	var ans struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("POST %s: %v in %q", path, err, body)
	}
	if err := json.Unmarshal(ans.Data, data); err != nil {
		t.Fatalf("POST %s: data: %v in %q", path, err, body)
	}
}

func (e *env) testGraphQL(t *testing.T) {
	var got struct {
		Version struct {
			Version string `json:"version"`
		} `json:"version"`
	}
	e.graphQL(t, "/graphql", "", "query Version { version { version } }", &got)
	if got.Version.Version != origin.Version {
		t.Errorf("version %q, want %q", got.Version.Version, origin.Version)
	}
}

// wsMessage is one graphql-transport-ws message.
type wsMessage struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// testWebSocket speaks graphql-transport-ws through the tunnel, then holds
// the socket idle (Stash sends nothing for minutes) and checks it still works.
func (e *env) testWebSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, "ws://"+publicHost+"/graphql", &websocket.DialOptions{
		HTTPClient:   e.client,
		Subprotocols: []string{origin.GraphQLSubprotocol},
	})
	if err != nil {
		t.Fatalf("websocket dial: %v (response %v)", err, res)
	}
	defer c.CloseNow()
	if c.Subprotocol() != origin.GraphQLSubprotocol {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	exchange := func(send wsMessage, want ...string) []wsMessage {
		t.Helper()
		if err := wsjson.Write(ctx, c, send); err != nil {
			t.Fatalf("send %s: %v", send.Type, err)
		}
		var got []wsMessage
		for _, w := range want {
			var m wsMessage
			if err := wsjson.Read(ctx, c, &m); err != nil {
				t.Fatalf("after %s, waiting for %s: %v", send.Type, w, err)
			}
			if m.Type != w {
				t.Fatalf("after %s: got %q, want %q", send.Type, m.Type, w)
			}
			got = append(got, m)
		}
		return got
	}
	exchange(wsMessage{Type: "connection_init"}, "connection_ack")
	exchange(wsMessage{Type: "ping"}, "pong")
	payload := json.RawMessage(`{"query":"subscription { scanProgress }"}`)
	msgs := exchange(wsMessage{Type: "subscribe", ID: "1", Payload: payload}, "next", "complete")
	if msgs[0].ID != "1" || msgs[1].ID != "1" {
		t.Errorf("ids %q, %q, want 1", msgs[0].ID, msgs[1].ID)
	}
	var next struct {
		Data struct {
			Echo json.RawMessage `json:"echo"`
		} `json:"data"`
	}
	if err := json.Unmarshal(msgs[0].Payload, &next); err != nil || !jsonEqual(next.Data.Echo, payload) {
		t.Errorf("next payload %s (%v), want the echo of %s", msgs[0].Payload, err, payload)
	}

	// Idle: nothing either way for 3 s, then the same socket still answers.
	time.Sleep(3 * time.Second)
	exchange(wsMessage{Type: "ping"}, "pong")
	exchange(wsMessage{Type: "subscribe", ID: "2", Payload: payload}, "next", "complete")
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("close: %v", err)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func (e *env) testLargeFile(t *testing.T) {
	// The expected hash is computed (once per package) while the download runs.
	var want [32]byte
	hashed := make(chan struct{})
	go func() { want = largeSHA256(); close(hashed) }()
	defer func() { <-hashed }()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/files/large.bin"), nil)
	start := time.Now()
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	if res.ContentLength != largeSize {
		t.Errorf("Content-Length %d, want %d", res.ContentLength, largeSize)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, res.Body, make([]byte, 256<<10))
	if err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
	d := time.Since(start)
	if n != largeSize {
		t.Fatalf("got %d bytes, want %d", n, largeSize)
	}
	<-hashed
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatalf("sha256 %x, want %x", got, want)
	}
	t.Logf("%d MiB in %v (%.0f MB/s; the origin's generator runs under -race)", n>>20, d.Round(time.Millisecond), float64(n)/d.Seconds()/1e6)
}

func (e *env) testRange(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)
	file := origin.NewLargeFile(largeSize)

	type span struct{ first, last int64 } // inclusive, as in a Range header
	spans := []span{{0, 0}, {largeSize - 1, largeSize - 1}, {largeSize - 100_000, largeSize - 1}}
	for range 6 {
		first := rng.Int64N(largeSize)
		last := min(first+rng.Int64N(2<<20), largeSize-1)
		spans = append(spans, span{first, last})
	}
	for _, s := range spans {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		status, hdr, body, err := e.getRange(ctx, fmt.Sprintf("bytes=%d-%d", s.first, s.last))
		cancel()
		if err != nil {
			t.Fatalf("range %d-%d: %v", s.first, s.last, err)
		}
		if status != http.StatusPartialContent {
			t.Fatalf("range %d-%d: status %d", s.first, s.last, status)
		}
		if cr, want := hdr.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", s.first, s.last, largeSize); cr != want {
			t.Errorf("Content-Range %q, want %q", cr, want)
		}
		want := make([]byte, s.last-s.first+1)
		if _, err := file.ReadAt(want, s.first); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(body, want) {
			t.Errorf("range %d-%d: %d bytes that differ from the origin's", s.first, s.last, len(body))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, hdr, _, err := e.getRange(ctx, fmt.Sprintf("bytes=%d-", largeSize+10))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: status %d, want 416", status)
	}
	if cr, want := hdr.Get("Content-Range"), fmt.Sprintf("bytes */%d", largeSize); cr != want {
		t.Errorf("416 Content-Range %q, want %q", cr, want)
	}
}

func (e *env) getRange(ctx context.Context, rng string) (int, http.Header, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/files/large.bin"), nil)
	req.Header.Set("Range", rng)
	res, err := e.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, body, err
}

// uploadBody generates n bytes on the fly: a random 64 KiB block with the
// block's index stamped in, so a lost, repeated or reordered block changes
// the hash. It hides its size, so the request goes out chunked.
type uploadBody struct {
	n, off int64
	block  []byte
}

func newUploadBody(n int64) *uploadBody {
	b := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return &uploadBody{n: n, block: b}
}

func (u *uploadBody) Read(p []byte) (int, error) {
	if u.off >= u.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), u.n-u.off)]
	total := 0
	for len(p) > 0 {
		i := u.off % int64(len(u.block))
		binary.LittleEndian.PutUint64(u.block, uint64(u.off/int64(len(u.block))))
		n := copy(p, u.block[i:])
		p, u.off, total = p[n:], u.off+int64(n), total+n
	}
	return total, nil
}

func (e *env) testChunkedUpload(t *testing.T) {
	const size = 128 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	h := sha256.New()
	body := io.TeeReader(newUploadBody(size), h)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url("/upload"), io.NopCloser(body))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %q", res.StatusCode, raw)
	}
	var got origin.UploadResult
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v in %q", err, raw)
	}
	if want := hex.EncodeToString(h.Sum(nil)); got.Bytes != size || got.SHA256 != want {
		t.Fatalf("origin got %d bytes with sha256 %s, sent %d with %s", got.Bytes, got.SHA256, size, want)
	}
	// Streamed, not buffered: the relay passed the body on chunked, without learning its length.
	if r, ok := e.origin.Observations().Last("/upload"); !ok || r.Header.Get("Content-Length") != "" {
		t.Errorf("origin's /upload request: seen %v, Content-Length %q (want chunked)", ok, r.Header.Get("Content-Length"))
	}
	t.Logf("%d MiB chunked in %v (%.0f MB/s)", size>>20, d.Round(time.Millisecond), float64(size)/d.Seconds()/1e6)
}

// testStreaming checks that nothing buffers a response: the origin flushes
// its first server-sent event at once and the last about a second later.
func (e *env) testStreaming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/events"), nil)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var events []string
	var at []time.Time
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
			at = append(at, time.Now())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(events) != 6 || events[0] != "first" || events[5] != "tick 5" {
		t.Fatalf("events %q", events)
	}
	first, last := at[0].Sub(start), at[len(at)-1].Sub(start)
	t.Logf("first event after %v, last after %v", first.Round(time.Millisecond), last.Round(time.Millisecond))
	if !at[0].Before(at[len(at)-1].Add(-500 * time.Millisecond)) {
		t.Errorf("first event arrived %v, only %v before the last: the response is buffered", first, last-first)
	}
}

// headersSeen asks the origin, through the relay, what it received for path.
func (e *env) headersSeen(t *testing.T, path string, hdr http.Header) origin.Request {
	t.Helper()
	status, body := e.mustGet(path, hdr)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %q", path, status, body)
	}
	var r origin.Request
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET %s: %v in %q", path, err, body)
	}
	return r
}

func (e *env) testHeaders(t *testing.T) {
	got := e.headersSeen(t, "/headers", http.Header{
		"X-Forwarded-For":    {"1.2.3.4"},
		"X-Real-Ip":          {"1.2.3.4"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Host":   {"evil.example"},
		"X-Forwarded-Port":   {"1"},
		"X-Forwarded-Prefix": {"/evil"},
	})
	if got.Host != publicHost {
		t.Errorf("Host %q, want %q", got.Host, publicHost)
	}
	if got.RequestURI != "/headers" {
		t.Errorf("path at the origin %q, want /headers", got.RequestURI)
	}
	want := map[string]string{
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  publicHost,
		"X-Forwarded-Port":  strconv.Itoa(e.httpPort),
	}
	for k, v := range want {
		if vs := got.Header.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("%s: %q, want %q", k, vs, v)
		}
	}
	if vs := got.Header.Values("X-Forwarded-Prefix"); len(vs) != 0 {
		t.Errorf("X-Forwarded-Prefix on the root route: %q", vs)
	}
}

func (e *env) testPrefix(t *testing.T) {
	got := e.headersSeen(t, "/stash/headers", nil)
	if got.RequestURI != "/headers" {
		t.Errorf("/stash/headers reached the origin as %q, want /headers", got.RequestURI)
	}
	if vs := got.Header.Values("X-Forwarded-Prefix"); len(vs) != 1 || vs[0] != "/stash" {
		t.Errorf("X-Forwarded-Prefix %q, want /stash", vs)
	}
	if got.Host != publicHost {
		t.Errorf("Host %q, want %q", got.Host, publicHost)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/stash"), nil)
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "/stash/" {
		t.Errorf("GET /stash: %d Location %q, want 308 to /stash/", res.StatusCode, res.Header.Get("Location"))
	}

	// A browser on a non-default port sends it in Host; Stash builds its URLs from Host and the prefix.
	hostPort := publicHost + ":" + strconv.Itoa(e.httpPort)
	var scene struct {
		FindScene struct {
			Paths struct {
				Stream     string `json:"stream"`
				Screenshot string `json:"screenshot"`
			} `json:"paths"`
		} `json:"findScene"`
	}
	e.graphQL(t, "/stash/graphql", hostPort, `query { findScene(id: "1") { paths { stream screenshot } } }`, &scene)
	base := "http://" + hostPort + "/stash/scene/1/"
	for _, u := range []string{scene.FindScene.Paths.Stream, scene.FindScene.Paths.Screenshot} {
		if !strings.HasPrefix(u, base) {
			t.Errorf("URL %q does not start with %q", u, base)
		}
	}
	// The built URL works through the relay.
	status, body := e.mustGet(strings.TrimPrefix(scene.FindScene.Paths.Stream, "http://"+hostPort), nil)
	if status != http.StatusOK || !bytes.Equal(body, origin.DemoVideo()) {
		t.Errorf("GET %s: %d, %d bytes (want the %d-byte demo video)", scene.FindScene.Paths.Stream, status, len(body), len(origin.DemoVideo()))
	}
}
