package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Server-sent events pacing: a first event at once, then eventTicks more.
const (
	eventTicks = 5
	eventEvery = 200 * time.Millisecond
)

// serveEvents writes "data: first" and flushes at once, then "data: tick N"
// every 200 ms for N = 1…5, then ends: a test through the tunnel sees the
// first event long before the end only if nothing buffers the response.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	if _, err := io.WriteString(w, "data: first\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(eventEvery)
	defer tick.Stop()
	for n := 1; n <= eventTicks; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if _, err := fmt.Fprintf(w, "data: tick %d\n\n", n); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// UploadResult is the JSON answer of POST /upload.
type UploadResult struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// serveUpload hashes the body as it streams in, whatever its size or framing.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r.Body, make([]byte, 64<<10))
	if err != nil {
		s.log.Debug("upload: read body", "bytes", n, "err", err)
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, UploadResult{Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))})
}
