package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// streamTransport carries the requests that have no body and may be sent
// twice (GET, HEAD, OPTIONS: the pages, thumbnails and video ranges that
// make up most of Stash's traffic) over pooled tunnel streams from the handler's own
// goroutine: it writes the request and reads the answer's head inline.
// http.Transport hands each request to a writer goroutine and each answer to
// a reader goroutine, three wake-ups per request that a small answer pays
// for in full. Requests with a body, and anything unusual, go to fallback,
// which handles request bodies racing early answers, 100-continue and the rest.
// Both write requests as rewrite left them, hop-by-hop headers gone (hop.go).
type streamTransport struct {
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback *http.Transport
	// reroute names another route (as an outgoing URL host) for a request
	// whose session ended before any answer came, when another session
	// serves the same route; false when none does.
	reroute func(ctx context.Context) (host string, ok bool)
	// unpublished reports a route (as an outgoing URL host) whose agent
	// session no longer takes requests: its streams are not kept idle.
	unpublished func(host string) bool
	maxIdle     int           // idle streams kept per route
	idleTimeout time.Duration // an idle stream older than this is closed
	// responseHeader bounds the wait for an answer's head on both ways
	// (limits.response_header); zero waits for ever.
	responseHeader time.Duration

	mu        sync.Mutex
	idle      map[string][]*streamConn // by the outgoing URL's host (the route id)
	lastSweep time.Time
}

type streamConn struct {
	conn  net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // idle since
}

func (t *streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.responseHeader <= 0 {
		return t.roundTrip(req)
	}
	w, req := waitHeader(req, t.responseHeader)
	return w.finish(t.roundTrip(req))
}

func (t *streamTransport) roundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		// Safe to send again on a fresh stream when a pooled one fails.
	default:
		return t.fallback.RoundTrip(req)
	}
	if (req.Body != nil && req.Body != http.NoBody) || req.ContentLength > 0 || req.Close ||
		req.Header.Get("Upgrade") != "" || req.Header.Get("Expect") != "" {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	host := req.URL.Host
	rerouted := false
	for {
		sc, reused := t.get(host)
		if sc == nil {
			addr := host
			if _, _, err := net.SplitHostPort(host); err != nil {
				addr = net.JoinHostPort(host, "80")
			}
			c, err := t.dial(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			sc = &streamConn{conn: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}
		}
		resp, answered, err := t.exchange(ctx, host, sc, req, reused)
		if err != nil && !answered && ctx.Err() == nil {
			if reused {
				// The agent had closed this pooled stream (its service ended the
				// keep-alive connection): nothing was answered, so try another.
				continue
			}
			var refused *protocol.StatusError
			if errors.As(err, &refused) {
				return nil, err // the agent answered: its service is down or refused
			}
			if other, ok := t.rerouteOnce(ctx, &rerouted); ok {
				// The agent's session ended under the request (its agent was
				// stopped or lost): another replica answers it.
				host = other
				req = req.Clone(ctx)
				req.URL.Host = other
				continue
			}
		}
		return resp, err
	}
}

// rerouteOnce asks reroute for another route, once per request.
func (t *streamTransport) rerouteOnce(ctx context.Context, done *bool) (string, bool) {
	if *done || t.reroute == nil {
		return "", false
	}
	*done = true
	return t.reroute(ctx)
}

// exchange sends req on sc and reads the answer's head. answered reports
// whether any byte of an answer arrived.
func (t *streamTransport) exchange(ctx context.Context, host string, sc *streamConn, req *http.Request, reused bool) (_ *http.Response, answered bool, _ error) {
	stop := context.AfterFunc(ctx, func() { abort(sc.conn) })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		abort(sc.conn)
		if ctx.Err() != nil {
			return nil, answered, ctx.Err()
		}
		return nil, answered, err
	}
	if err := req.Write(sc.bw); err != nil {
		return fail(err)
	}
	if err := sc.bw.Flush(); err != nil {
		return fail(err)
	}
	if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.WroteRequest != nil {
		trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
	if _, err := sc.br.Peek(1); err != nil {
		return fail(err)
	}
	answered = true
	resp, err := http.ReadResponse(sc.br, req)
	// Informational answers (103 Early Hints) come before the real one.
	for i := 0; err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols; i++ {
		if i == maxInformational {
			return fail(errors.New("relay: the service sent too many informational answers"))
		}
		resp, err = http.ReadResponse(sc.br, req)
	}
	if err != nil {
		return fail(err)
	}
	if reused && resp.StatusCode == http.StatusRequestTimeout {
		// A service may say 408 on an idle keep-alive connection before it
		// closes it: that answer is not to this request.
		answered = false
		return fail(errStaleStream)
	}
	resp.Body = &streamBody{ReadCloser: resp.Body, t: t, host: host, sc: sc, stop: stop,
		reuse: !resp.Close && resp.ProtoAtLeast(1, 1) && resp.StatusCode != http.StatusSwitchingProtocols}
	return resp, true, nil
}

// maxInformational bounds the 1xx answers read before the real one.
const maxInformational = 8

var errStaleStream = errors.New("relay: pooled tunnel stream was closed by the service")

// streamBody puts its stream back in the pool once the answer was read to
// its end, and closes it otherwise: draining an abandoned video would cost
// the rest of the file.
type streamBody struct {
	io.ReadCloser
	t     *streamTransport
	host  string
	sc    *streamConn
	stop  func() bool
	reuse bool

	eof  bool
	once sync.Once
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.once.Do(func() {
		// stop is false when the request's context already closed the stream.
		// Bytes past the answer's end would be read as the next answer.
		if b.stop() && b.eof && b.reuse && b.sc.br.Buffered() == 0 && b.ReadCloser.Close() == nil {
			b.t.put(b.host, b.sc)
			return
		}
		abort(b.sc.conn)
	})
	return nil
}

// abort ends a tunnel stream whose answer is no longer wanted: the agent
// stops sending at once (see protocol.Stream.Abort) instead of pushing the
// rest of a video through the tunnel ahead of the next answer, as after a
// seek. A connection that is not a tunnel stream is closed.
func abort(c net.Conn) {
	if st, ok := c.(protocol.Stream); ok {
		st.Abort()
		return
	}
	c.Close()
}

// get pops the most recently idled stream of host, if any.
func (t *streamTransport) get(host string) (*streamConn, bool) {
	var expired []*streamConn
	defer func() { closeAll(expired) }() // outside the lock: a close may wait on a stalled session
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[host]
	for len(list) > 0 {
		sc := list[len(list)-1]
		list = list[:len(list)-1]
		if time.Since(sc.since) > t.idleTimeout {
			expired = append(expired, sc)
			continue
		}
		t.idle[host] = list
		return sc, true
	}
	delete(t.idle, host)
	return nil, false
}

func (t *streamTransport) put(host string, sc *streamConn) {
	var expired []*streamConn
	defer func() { closeAll(expired) }()
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.lastSweep) > t.idleTimeout/3 {
		expired = t.sweepLocked(now)
	}
	if t.idle == nil {
		t.idle = map[string][]*streamConn{}
	}
	if len(t.idle[host]) >= t.maxIdle || (t.unpublished != nil && t.unpublished(host)) {
		expired = append(expired, sc)
		return
	}
	sc.since = now
	t.idle[host] = append(t.idle[host], sc)
}

// sweepLocked takes out the streams idle too long, for the caller to close
// once unlocked, and forgets the routes of sessions that ended.
func (t *streamTransport) sweepLocked(now time.Time) (expired []*streamConn) {
	t.lastSweep = now
	for host, list := range t.idle {
		keep := list[:0]
		for _, sc := range list {
			if now.Sub(sc.since) > t.idleTimeout {
				expired = append(expired, sc)
			} else {
				keep = append(keep, sc)
			}
		}
		if len(keep) == 0 {
			delete(t.idle, host)
		} else {
			t.idle[host] = keep
		}
	}
	return expired
}

func closeAll(list []*streamConn) {
	for _, sc := range list {
		sc.conn.Close()
	}
}

// CloseIdleConnections closes every idle stream, of both transports.
// closeIdle closes the idle streams of the routes named by hosts (outgoing
// URL hosts), and the fallback transport's idle connections: the agent of
// those routes is going away, and each idle stream keeps a connection to its
// service open there.
func (t *streamTransport) closeIdle(hosts ...string) {
	var idle [][]*streamConn
	t.mu.Lock()
	for _, h := range hosts {
		idle = append(idle, t.idle[h])
		delete(t.idle, h)
	}
	t.mu.Unlock()
	for _, list := range idle {
		closeAll(list)
	}
	t.fallback.CloseIdleConnections()
}

func (t *streamTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, list := range idle {
		closeAll(list)
	}
	t.fallback.CloseIdleConnections()
}
