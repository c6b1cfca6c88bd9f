package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/origin"
)

// A relay told to stop (SIGTERM) lets a download in flight finish, and its
// agent hears that the relay is going away.
func TestRelayDrainsOnStop(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			// A viewer: the first 4 MiB, then the stop, then the rest at
			// up to 200 MB/s, so that the answer ends inside the grace.
			resp, h := startDownload(t, e, 4<<20)
			stopped := make(chan error, 1)
			go func() { stopped <- e.relay.stop(syscall.SIGTERM) }()
			buf := make([]byte, 1<<20)
			for {
				n, err := resp.Body.Read(buf)
				h.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("the download was cut by the relay's stop: %v", err)
				}
				time.Sleep(5 * time.Millisecond) // at most 1 MiB per 5 ms
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != prefixSHA256(drainSize) {
				t.Error("the download that ended during the drain is not intact")
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(e.agentLog.String(), "relay going away") {
				t.Errorf("the agent did not log the relay's going away:\n%s", e.agentLog)
			}
			if !strings.Contains(e.relayLog.String(), "finishing the requests in flight") {
				t.Error("the relay did not log its drain")
			}
		})
	}
}

// An agent told to stop tells the relay, which sends new requests elsewhere
// (here: the agent-offline page at once), and finishes a download in flight
// within its shutdown_grace.
func TestAgentDrainsOnStop(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnv(t, tr)
			resp, h := startDownload(t, e, 1<<20)
			stopped := make(chan error, 1)
			go func() { stopped <- e.agent.stop(syscall.SIGTERM) }()
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(e.relayLog.String(), "agent going away") {
				if time.Now().After(deadline) {
					t.Fatal("the relay did not hear the agent going away")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if status, _ := e.mustGet("/healthz", nil); status != http.StatusServiceUnavailable {
				t.Errorf("a new request while the agent drains: %d, want 503 (no replica)", status)
			}
			if _, err := io.Copy(h, resp.Body); err != nil {
				t.Fatalf("the download was cut by the agent's stop: %v", err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != prefixSHA256(drainSize) {
				t.Error("the download that ended during the drain is not intact")
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// startDownload asks for the first drainSize bytes of the large file and
// reads the first n of them into the hash it returns with the answer, whose
// body the test's end closes.
func startDownload(t *testing.T, e *env, n int64) (*http.Response, hash.Hash) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/files/large.bin"), nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=0-%d", drainSize-1))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, n); err != nil {
		t.Fatal(err)
	}
	return resp, h
}

// drainSize is the answer the drain tests read: a 32 MiB range of the large
// file, short enough to finish inside a grace period on a loaded machine.
const drainSize = 32 << 20

// prefixSHA256 is the hex SHA-256 of the large file's first n bytes.
func prefixSHA256(n int64) string {
	h := sha256.New()
	f := origin.NewLargeFile(largeSize)
	_, _ = io.Copy(h, io.NewSectionReader(f, 0, n))
	return hex.EncodeToString(h.Sum(nil))
}
