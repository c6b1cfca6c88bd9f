package origin

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Request is what the origin saw of one request; GET /headers answers it as JSON.
type Request struct {
	Method     string      `json:"method"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr"`
	RequestURI string      `json:"request_uri"`
	Proto      string      `json:"proto"`
	Header     http.Header `json:"header"`
	At         time.Time   `json:"at"`
}

// Transcode is one simulated live transcode (GET /stream.mp4 and friends).
type Transcode struct {
	Path  string    // request path
	Start time.Time // when the handler started
	End   time.Time // when the handler saw the client go away; zero while running
	Bytes int64     // body bytes written
}

// Observations records, for tests, what the origin saw. It is safe for
// concurrent use; every accessor returns a copy.
type Observations struct {
	mu         sync.Mutex
	last       map[string]Request // by r.URL.Path as received
	requests   int
	transcodes []Transcode
	wsOpen     int
	wsTotal    int
	tripped    string        // client IP that set off the tripwire, or ""
	changed    chan struct{} // closed and replaced on every change
}

func newObservations() *Observations {
	return &Observations{last: make(map[string]Request), changed: make(chan struct{})}
}

// Last returns the last request seen for path (the path as it reached the origin).
func (o *Observations) Last(path string) (Request, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, ok := o.last[path]
	r.Header = r.Header.Clone()
	return r, ok
}

// Requests returns how many requests the origin has seen.
func (o *Observations) Requests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests
}

// Transcodes returns every simulated transcode so far, oldest first.
func (o *Observations) Transcodes() []Transcode {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.transcodes)
}

// WebSockets returns how many websockets are open now and how many were ever accepted.
func (o *Observations) WebSockets() (open, total int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.wsOpen, o.wsTotal
}

// Tripped returns the public client IP that set off the tripwire, or "".
func (o *Observations) Tripped() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tripped
}

// Wait blocks until cond returns true (checked now and after every change) or ctx ends.
func (o *Observations) Wait(ctx context.Context, cond func(*Observations) bool) error {
	for {
		o.mu.Lock()
		ch := o.changed
		o.mu.Unlock()
		if cond(o) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changedLocked wakes every Wait.
func (o *Observations) changedLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *Observations) record(r *http.Request) {
	req := Request{
		Method:     r.Method,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		RequestURI: r.RequestURI,
		Proto:      r.Proto,
		Header:     r.Header.Clone(),
		At:         time.Now(),
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last[r.URL.Path] = req
	o.requests++
	o.changedLocked()
}

// transcodeStarted registers a transcode and returns the func that ends it.
func (o *Observations) transcodeStarted(path string) (end func(bytes int64)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := len(o.transcodes)
	o.transcodes = append(o.transcodes, Transcode{Path: path, Start: time.Now()})
	o.changedLocked()
	return func(bytes int64) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.transcodes[i].End = time.Now()
		o.transcodes[i].Bytes = bytes
		o.changedLocked()
	}
}

// wsOpened counts an accepted websocket and returns the func that uncounts it.
func (o *Observations) wsOpened() (closed func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.wsOpen++
	o.wsTotal++
	o.changedLocked()
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.wsOpen--
		o.changedLocked()
	}
}

// trip sets off the tripwire, and reports whether ip is the one that did it.
func (o *Observations) trip(ip string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.tripped != "" {
		return false
	}
	o.tripped = ip
	o.changedLocked()
	return true
}
