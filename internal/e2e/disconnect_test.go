package e2e

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/origin"
)

// disconnectBound is how soon the origin must see a public client's abort.
const disconnectBound = time.Second

// TestDisconnectPropagation reads a little of an endless transcode and hangs
// up: the origin's handler (ffmpeg, in a real Stash) must see the client go
// away within disconnectBound, through relay, tunnel and agent.
func TestDisconnectPropagation(t *testing.T) {
	const path = "/scene/1/stream.mp4"
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tr)
			obs := e.origin.Observations()
			for round := range 3 {
				before := len(obs.Transcodes())
				ctx, cancel := context.WithCancel(context.Background())
				timer := time.AfterFunc(20*time.Second, cancel)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url(path), nil)
				res, err := e.client.Do(req)
				if err != nil {
					cancel()
					t.Fatal(err)
				}
				if res.StatusCode != http.StatusOK {
					cancel()
					t.Fatalf("status %d", res.StatusCode)
				}
				if _, err := io.ReadFull(res.Body, make([]byte, 256<<10)); err != nil {
					cancel()
					t.Fatal(err)
				}
				abort := time.Now()
				cancel()
				res.Body.Close()
				timer.Stop()

				wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = obs.Wait(wctx, func(o *origin.Observations) bool {
					tc := o.Transcodes()
					return len(tc) > before && !tc[before].End.IsZero()
				})
				wcancel()
				if err != nil {
					t.Fatalf("round %d: the origin's transcode still runs 10s after the client hung up", round)
				}
				tc := obs.Transcodes()[before]
				d := tc.End.Sub(abort)
				t.Logf("%s round %d: origin saw the abort %v after it (%d KiB sent)", tr, round, d.Round(time.Millisecond), tc.Bytes>>10)
				if d > disconnectBound {
					t.Errorf("round %d: origin saw the abort %v after it, want < %v", round, d, disconnectBound)
				}
			}
		})
	}
}
