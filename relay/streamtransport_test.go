package relay_test

import (
	"bufio"
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
// ends the service's answer at once: the relay neither reads the rest of the
// file to reuse the stream, nor lets the agent go on pushing it through the
// tunnel ahead of the next answer. The service writes at 64 MB/s, a little
// faster than a 4K video's bitrate times a player's read-ahead.
func TestAbandonedAnswerIsNotDrained(t *testing.T) {
	for _, tr := range []string{"quic", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			var sent atomic.Int64
			written := make(chan int64, 1)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/video" {
					return // the agent's probe of the service
				}
				w.Header().Set("Content-Length", fmt.Sprint(int64(4<<30)))
				buf := make([]byte, 64<<10)
				for sent.Load() < 4<<30 {
					m, err := w.Write(buf)
					sent.Add(int64(m))
					if err != nil {
						break
					}
					time.Sleep(time.Millisecond)
				}
				written <- sent.Load()
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
			left := sent.Load()
			select {
			case n := <-written:
				// Before the agent learns that the visitor left, it moves what
				// the service writes meanwhile: well under 8 MiB. Without a
				// reset it goes on for as long as the stream's flow-control
				// credit lasts, 16 MiB.
				if after := n - left; after >= 8<<20 {
					t.Errorf("the service wrote %d MiB more after the visitor left, want under 8", after>>20)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the service was still writing 20 s after the visitor left")
			}
		})
	}
}

// rawOrigin answers each request on a connection with "ok", followed by
// what tail gives for that connection's answer number.
func rawOrigin(t *testing.T, tail func(n int) (extra string, closeAfter bool)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					extra, closeAfter := tail(n)
					if closeAfter {
						// The parting words come later, on the idle connection.
						if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
							return
						}
						time.Sleep(10 * time.Millisecond)
						io.WriteString(c, extra)
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"+extra); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A pooled stream is never handed a stale answer: bytes a service sent past
// its answer's end, or a 408 it sent on an idle keep-alive connection before
// closing it, are not taken as the next visitor's answer.
func TestStreamPoolRefusesStaleAnswers(t *testing.T) {
	cases := map[string]func(n int) (string, bool){
		"bytes past the end": func(int) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong", false
		},
		"408 on an idle connection": func(int) (string, bool) {
			return "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", true
		},
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			origin := rawOrigin(t, tail)
			h := startRelay(t, []string{"stale.test"})
			startAgent(t, h, "tcp", []agent.Route{{Host: "stale.test", Service: origin, AllowUnauthenticated: true}})
			for i := range 4 {
				resp, body := get(t, h.public+"/", "stale.test")
				if resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("request %d: %d %q, want 200 \"ok\"", i, resp.StatusCode, body)
				}
				time.Sleep(20 * time.Millisecond) // the tail reaches the relay
			}
		})
	}
}
