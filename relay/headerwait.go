package relay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// errServiceSlow is a service that sent no response headers within
// limits.response_header of the request being written; the visitor gets
// pageServiceSlow (504).
var errServiceSlow = errors.New("relay: the service sent no response headers in time")

// headerWait bounds the wait for one answer's head. The clock starts once the
// request is written, body included (httptrace's WroteRequest, which both of
// streamTransport's ways report), as for http.Transport's
// ResponseHeaderTimeout: a long upload is not the service's delay. When it
// runs out, the request's context is cancelled, and each way aborts the
// tunnel stream on that, so the agent drops its connection to the service.
type headerWait struct {
	limit  time.Duration
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	timer   *time.Timer // guarded by mu; nil until the request is written
	done    bool        // guarded by mu; RoundTrip returned
	expired bool        // guarded by mu; the context was cancelled for errServiceSlow
}

// waitHeader returns req with a context that ends limit after the request
// is written, unless the answer's head arrived before (see finish).
func waitHeader(req *http.Request, limit time.Duration) (*headerWait, *http.Request) {
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &headerWait{limit: limit, cancel: cancel}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: w.wroteRequest})
	return w, req.WithContext(ctx)
}

// wroteRequest starts the clock, or starts it again when a retry on a fresh
// stream wrote the request once more.
func (w *headerWait) wroteRequest(httptrace.WroteRequestInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.limit, w.expire)
	} else {
		w.timer.Reset(w.limit)
	}
}

func (w *headerWait) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.expired = true
		w.cancel(errServiceSlow)
	}
}

// finish stops the clock and turns an answer that came too late into
// errServiceSlow. On success the context lives on with the answer's body
// and ends with the visitor's request.
func (w *headerWait) finish(resp *http.Response, err error) (*http.Response, error) {
	w.mu.Lock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	expired := w.expired
	w.mu.Unlock()
	if expired {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, errServiceSlow
	}
	if err != nil {
		w.cancel(err)
	}
	return resp, err
}
