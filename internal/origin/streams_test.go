package origin

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestUpload(t *testing.T) {
	o := startOrigin(t, Options{})
	for _, c := range []struct {
		size    int64
		chunked bool
	}{{64 << 20, true}, {4<<20 + 3, false}, {0, false}} {
		size, chunked := c.size, c.chunked
		want := LargeFileSHA256(size)
		// The body is generated as it is sent: neither side holds it.
		req, _ := http.NewRequest(http.MethodPost, o.URL+"/upload", io.LimitReader(NewLargeFile(size), size))
		req.ContentLength = size
		if chunked {
			req.ContentLength = -1
		}
		resp, err := o.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got UploadResult
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("chunked=%v: %d, %v", chunked, resp.StatusCode, err)
		}
		if got.Bytes != size || got.SHA256 != hex.EncodeToString(want[:]) {
			t.Errorf("chunked=%v: got %+v, want %d bytes, %x", chunked, got, size, want)
		}
	}
}

func TestEventsFlushFirstEventAtOnce(t *testing.T) {
	o := startOrigin(t, Options{})
	start := time.Now()
	resp, err := o.Client.Get(o.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var events []string
	var first time.Duration
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			if len(events) == 0 {
				first = time.Since(start)
			}
			events = append(events, line)
		}
	}
	total := time.Since(start)
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"first", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", events, want)
	}
	if total < eventTicks*eventEvery {
		t.Errorf("stream ended after %v, want ≥ %v", total, eventTicks*eventEvery)
	}
	if first > total-eventTicks*eventEvery/2 {
		t.Errorf("first event after %v of %v: it was not flushed at once", first, total)
	}
}

// TestTranscodeDisconnect checks the live-transcode shape (200, chunked, no
// Range) and that the origin notices a client going away within a second.
func TestTranscodeDisconnect(t *testing.T) {
	o := startOrigin(t, Options{})
	for _, path := range []string{"/stream.mp4", "/scene/1/stream.webm"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+path, nil)
		req.Header.Set("Range", "bytes=100-")
		resp, err := o.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ContentLength != -1 ||
			len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("%s: %d, length %d, transfer encoding %v; want 200 chunked", path, resp.StatusCode, resp.ContentLength, resp.TransferEncoding)
		}
		if resp.Header.Get("Accept-Ranges") != "" || resp.Header.Get("Content-Range") != "" {
			t.Errorf("%s: a live transcode has no Range support", path)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 3*transcodeChunk)); err != nil {
			t.Fatalf("%s: reading: %v", path, err)
		}
		obs := o.Observations()
		if tc := obs.Transcodes(); len(tc) == 0 || !tc[len(tc)-1].End.IsZero() || tc[len(tc)-1].Path != path {
			t.Fatalf("%s: transcodes %+v, want one running", path, tc)
		}

		aborted := time.Now()
		cancel()
		resp.Body.Close()
		wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = obs.Wait(wctx, func(obs *Observations) bool {
			tc := obs.Transcodes()
			return !tc[len(tc)-1].End.IsZero()
		})
		wcancel()
		if err != nil {
			t.Fatalf("%s: the origin never saw the client go away", path)
		}
		tc := obs.Transcodes()
		last := tc[len(tc)-1]
		if d := last.End.Sub(aborted); d > time.Second {
			t.Errorf("%s: origin saw the disconnect %v after the abort, want < 1s", path, d)
		}
		if last.Bytes < 3*transcodeChunk {
			t.Errorf("%s: Bytes = %d", path, last.Bytes)
		}
	}
	if w := do(t, o.Server, http.MethodGet, "/scene/9/stream.mp4", nil, nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown scene transcode = %d, want 404", w.Code)
	}
}
