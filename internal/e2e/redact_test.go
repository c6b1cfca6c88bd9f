package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/burrow-tunnel/burrow/internal/origin"
)

// secretHeaders carry credentials the way Stash's clients send them.
func secretHeaders() http.Header {
	return http.Header{
		"Apikey":        {"SECRETKEY2"},
		"Cookie":        {"session=SECRETKEY3"},
		"Authorization": {"Bearer SECRETKEY4"},
	}
}

// TestLogRedaction sends credentials in the query and headers through
// successful requests and every error path, with both processes logging at
// debug, and then looks for them (and the agent token) in both logs.
func TestLogRedaction(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tr)
			const q = "?apikey=SECRETKEY1"
			get := func(path string) int {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				status, _, err := e.get(ctx, path, secretHeaders())
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				return status
			}
			expect := func(path string, want int) {
				t.Helper()
				if got := get(path); got != want {
					t.Errorf("GET %s: %d, want %d", path, got, want)
				}
			}

			expect("/"+q, http.StatusOK)
			expect("/headers"+q, http.StatusOK)
			expect("/stash/headers"+q, http.StatusOK)
			expect("/stash"+q, http.StatusPermanentRedirect)
			expect("/files/small.bin"+q+"&x=1", http.StatusOK)
			expect("/down/"+q, http.StatusBadGateway)
			expect("/down/scene/1/stream"+q, http.StatusBadGateway)

			// Unknown host, and a bad request line.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://other.example/"+q, nil)
			req.Header = secretHeaders()
			if res, err := e.client.Do(req); err != nil {
				t.Error(err)
			} else {
				res.Body.Close()
				if res.StatusCode != http.StatusNotFound {
					t.Errorf("unknown host: %d", res.StatusCode)
				}
			}
			cancel()

			// A websocket with credentials in the URL and headers.
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			h := secretHeaders()
			c, _, err := websocket.Dial(ctx, "ws://"+publicHost+"/graphql"+q, &websocket.DialOptions{
				HTTPClient: e.client, Subprotocols: []string{origin.GraphQLSubprotocol}, HTTPHeader: h,
			})
			if err != nil {
				t.Errorf("websocket: %v", err)
			} else {
				c.Close(websocket.StatusNormalClosure, "")
			}
			cancel()

			// A client that hangs up mid-stream.
			ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, e.url("/scene/1/stream.mp4"+q), nil)
			req.Header = secretHeaders()
			if res, err := e.client.Do(req); err != nil {
				t.Error(err)
			} else {
				_, _ = io.ReadFull(res.Body, make([]byte, 64<<10))
				cancel()
				res.Body.Close()
			}
			cancel()
			time.Sleep(200 * time.Millisecond)

			// A client that gives up before the answer's headers (mid-upload):
			// the relay's "client gone" path, logged at debug.
			ctx, cancel = context.WithCancel(context.Background())
			pr, pw := io.Pipe()
			req, _ = http.NewRequestWithContext(ctx, http.MethodPost, e.url("/upload"+q), pr)
			req.Header = secretHeaders()
			done := make(chan struct{})
			go func() {
				defer close(done)
				if res, err := e.client.Do(req); err == nil {
					res.Body.Close()
					t.Errorf("aborted upload answered %d", res.StatusCode)
				}
			}()
			_, _ = pw.Write(make([]byte, 64<<10))
			time.Sleep(200 * time.Millisecond)
			cancel()
			pw.CloseWithError(context.Canceled)
			<-done
			time.Sleep(200 * time.Millisecond)

			// The agent goes away: 503.
			if err := e.agent.stop(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			expect("/"+q, http.StatusServiceUnavailable)

			if err := e.relay.stop(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			logs := map[string]string{"relay": e.relayLog.String(), "agent": e.agentLog.String()}
			for name, log := range logs {
				if name == "relay" && !strings.Contains(log, "level=DEBUG") {
					t.Errorf("%s logged nothing at debug: the check proves little", name)
				}
				t.Logf("%s: %d log lines checked, %d at debug", name, strings.Count(log, "\n"), strings.Count(log, "level=DEBUG"))
				for _, secret := range []string{"SECRETKEY", e.token} {
					if i := strings.Index(log, secret); i >= 0 {
						line := log[strings.LastIndex(log[:i], "\n")+1:]
						if j := strings.IndexByte(line, '\n'); j >= 0 {
							line = line[:j]
						}
						t.Errorf("%s's log holds a secret (%.12s…): %s", name, secret, line)
					}
				}
			}
		})
	}
}
