package relay_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
)

// Requests without a body reuse one tunnel stream (and so one connection to
// the service), and a pooled stream whose service connection was closed
// meanwhile is replaced without the visitor seeing an error.
func TestStreamReuseAndStaleStreams(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			var conns atomic.Int64
			origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, "ok")
			}))
			origin.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			origin.Start()
			defer origin.Close()
			h := startRelay(t, []string{"reuse.test"})
			startAgent(t, h, tr, []agent.Route{{Host: "reuse.test", Service: origin.URL, AllowUnauthenticated: true}})
			var first int64
			for i := range 5 {
				if resp, body := get(t, h.public+"/", "reuse.test"); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
				if i == 0 {
					first = conns.Load() // the agent's own login probe may have opened one too
				}
			}
			if n := conns.Load() - first; n != 0 {
				t.Errorf("4 more sequential requests opened %d more connections to the service, want 0", n)
			}
			// The service ends its keep-alive connections: the relay's pooled
			// stream is dead, which the next request must not notice.
			origin.CloseClientConnections()
			time.Sleep(50 * time.Millisecond)
			for i := range 3 {
				if resp, body := get(t, h.public+"/", "reuse.test"); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("after the service closed its connections, request %d: %d %q", i, resp.StatusCode, body)
				}
			}
		})
	}
}

// A visitor who leaves in the middle of a long answer (a seek in a video)
// ends the service's answer: the relay closes the stream rather than read
// the rest of the file to reuse it.
func TestAbandonedAnswerIsNotDrained(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			written := make(chan int64, 1)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", fmt.Sprint(int64(4<<30)))
				buf := make([]byte, 64<<10)
				var n int64
				for n < 4<<30 {
					m, err := w.Write(buf)
					n += int64(m)
					if err != nil {
						break
					}
				}
				written <- n
			}))
			defer origin.Close()
			h := startRelay(t, []string{"seek.test"})
			startAgent(t, h, tr, []agent.Route{{Host: "seek.test", Service: origin.URL, AllowUnauthenticated: true}})
			req, _ := http.NewRequest("GET", h.public+"/video", nil)
			req.Host = "seek.test"
			c := &http.Client{Transport: &http.Transport{}}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			c.CloseIdleConnections()
			select {
			case n := <-written:
				if n >= 4<<30 {
					t.Fatalf("the service wrote the whole 4 GiB answer after the visitor left")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the service was still writing 20 s after the visitor left")
			}
		})
	}
}
