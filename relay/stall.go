package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// A visitor that stops reading an answer holds its tunnel stream, the
// agent's connection to the service and every byte buffered between them
// for as long as it keeps its connection open; one that stops sending an
// upload holds the same from the other end. limits.stalled_client cuts both,
// as nginx's send_timeout and client_body_timeout do: the clock runs only
// while a write to the visitor (at most one 64 KiB buffer of the proxy) or a
// read of its upload is waiting, and starts again with each one, so a
// visitor that keeps reading, however slowly, is never cut. Its reading
// shows as the write completing, which happens in steps: the kernel wakes a
// writer once a third of the socket's send buffer is free again (at most
// about 1.4 MB with Linux defaults, far less on a slow link), and HTTP/2 and
// HTTP/3 clients grant credit once they read about half their window.
//
// The cut expires the deadline of the waiting write or read through
// http.ResponseController, which each of the relay's servers supports for
// its own unit: the TCP connection for HTTP/1.1, the one stream for HTTP/2
// (reset with RST_STREAM; the connection's other streams go on) and for
// HTTP/3 (quic-go resets the stream when the handler returns with its write
// failed). The failed write ends the proxy's copy of the answer, and the
// proxy closes the answer's body; the failed read ends the request's body.
// Either way the transport aborts the tunnel stream, so the agent stops
// sending at once (see abort and abortingConn).
//
// An HTTP/2 visitor can stop the cut from reaching it: one that grants large
// windows and then reads nothing from its socket fills the kernel's buffers,
// so the relay's writer for the whole connection waits, and the RST_STREAM
// that would end the stream waits behind it for as long as the connection
// lasts. A write still waiting limits.stalled_client after its cut therefore
// closes the connection: nothing at all went out on it for that long.
//
// Upgraded connections (WebSockets) never come here: an idle Stash
// subscription sends nothing for minutes.

var (
	// errClientStalled is what a read of an upload that was cut returns.
	errClientStalled = errors.New("relay: the visitor made no progress for limits.stalled_client")
	// pastDeadline makes a waiting write or read fail at once.
	pastDeadline = time.Unix(1, 0)
)

// stallGuard watches one request's writes to the visitor and reads of its
// body, with one timer that runs only while one of them waits.
type stallGuard struct {
	limit        time.Duration
	rc           *http.ResponseController // of the server's own ResponseWriter
	conn         net.Conn                 // the HTTP/2 connection, closed if a cut does not reach it; else nil
	log          *slog.Logger
	host, client string // the request's Host and the visitor's address, for the log

	mu      sync.Mutex
	writing time.Time   // guarded by mu; when the waiting write began, zero if none
	reading time.Time   // guarded by mu; when the waiting read began, zero if none
	timer   *time.Timer // guarded by mu; nil until the first write or read
	armed   bool        // guarded by mu; timer will fire
	upload  bool        // guarded by mu; the cut was of a stalled upload
	over    bool        // guarded by mu; cut, or the handler returned: nothing more to watch
	done    bool        // guarded by mu; the handler returned
}

// serveWatched proxies r with the visitor's writes and upload reads watched.
func (s *Server) serveWatched(w http.ResponseWriter, r *http.Request, limit time.Duration) {
	g := &stallGuard{limit: limit, rc: http.NewResponseController(w), log: s.log, host: r.Host, client: r.RemoteAddr}
	if r.ProtoMajor == 2 {
		g.conn, _ = r.Context().Value(connKey).(net.Conn)
	}
	defer g.stop()
	r = r.WithContext(context.WithValue(r.Context(), stallKey, g))
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &stallBody{ReadCloser: r.Body, g: g}
	}
	sw := &stallWriter{ResponseWriter: w, g: g}
	s.proxy.ServeHTTP(sw, r)
	if sw.written > finalFlushAbove {
		// What the server still buffers goes out while watched: after the
		// handler it would wait for a visitor who stopped reading at the end
		// for as long as the connection lasts.
		_ = sw.FlushError()
	}
}

// finalFlushAbove: a smaller answer is left to the server, which then sets
// its Content-Length; it fits in the server's buffers anyway.
const finalFlushAbove = 4 << 10

// uploadStalled reports whether r's body was cut for stalling.
func uploadStalled(r *http.Request) bool {
	g, _ := r.Context().Value(stallKey).(*stallGuard)
	return g != nil && g.uploadCut()
}

// begin marks a write (or read) as waiting from now.
func (g *stallGuard) begin(since *time.Time) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	*since = now
	if g.armed || g.over {
		return
	}
	// A timer already armed fires no later than now+limit; it re-arms itself
	// for whatever is waiting then.
	g.armed = true
	if g.timer == nil {
		g.timer = time.AfterFunc(g.limit, g.check)
	} else {
		g.timer.Reset(g.limit)
	}
}

// end marks the write (or read) begun last as done: progress.
func (g *stallGuard) end(since *time.Time) {
	g.mu.Lock()
	*since = time.Time{}
	g.mu.Unlock()
}

// check runs when the timer fires: it cuts a write or read that has waited
// the whole limit, and otherwise waits for the one waiting now.
func (g *stallGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = false
	if g.over {
		return
	}
	now := time.Now()
	var next time.Duration
	for _, op := range []struct {
		since  time.Time
		upload bool
	}{{g.writing, false}, {g.reading, true}} {
		if op.since.IsZero() {
			continue
		}
		waited := now.Sub(op.since)
		if waited >= g.limit {
			g.cutLocked(op.upload)
			return
		}
		if left := g.limit - waited; next == 0 || left < next {
			next = left
		}
	}
	if next > 0 {
		g.armed = true
		g.timer.Reset(next)
	}
}

// cutLocked fails the waiting write or read. The ResponseController is used
// only while the handler runs (stop takes the same lock), as it must be.
func (g *stallGuard) cutLocked(upload bool) {
	g.over = true
	g.upload = upload
	g.log.Debug("visitor stalled, cut", "host", g.host, "client", g.client, "upload", upload, "limit", g.limit)
	if upload {
		_ = g.rc.SetReadDeadline(pastDeadline)
		return
	}
	_ = g.rc.SetWriteDeadline(pastDeadline)
	if g.conn != nil {
		time.AfterFunc(g.limit, g.closeWedged)
	}
}

// closeWedged closes the HTTP/2 connection when the write that was cut is
// still waiting: the connection took nothing for a whole limit.
func (g *stallGuard) closeWedged() {
	g.mu.Lock()
	wedged := !g.done && !g.writing.IsZero()
	g.mu.Unlock()
	if wedged {
		g.log.Debug("visitor's connection wedged, closed", "host", g.host, "client", g.client, "limit", g.limit)
		_ = g.conn.Close()
	}
}

// uploadCut reports whether the request's body was cut for stalling.
func (g *stallGuard) uploadCut() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.over && g.upload
}

// stop ends the watch; it must run before the handler returns.
func (g *stallGuard) stop() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.over = true
	g.done = true
	if g.timer != nil {
		g.timer.Stop()
	}
}

// stallWriter is the ResponseWriter the proxy writes the answer to.
type stallWriter struct {
	http.ResponseWriter
	g       *stallGuard
	written int64 // body bytes written; the handler's goroutine only
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.g.begin(&w.g.writing)
	n, err := w.ResponseWriter.Write(p)
	w.g.end(&w.g.writing)
	w.written += int64(n)
	return n, err
}

// WriteHeader is watched too: an informational answer (103) goes out at once.
func (w *stallWriter) WriteHeader(code int) {
	w.g.begin(&w.g.writing)
	w.ResponseWriter.WriteHeader(code)
	w.g.end(&w.g.writing)
}

// FlushError is what http.ResponseController.Flush calls.
func (w *stallWriter) FlushError() error {
	w.g.begin(&w.g.writing)
	err := w.g.rc.Flush()
	w.g.end(&w.g.writing)
	return err
}

// Unwrap gives http.ResponseController the server's ResponseWriter.
func (w *stallWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// stallBody is the request body the proxy reads the upload from.
type stallBody struct {
	io.ReadCloser
	g *stallGuard
}

func (b *stallBody) Read(p []byte) (int, error) {
	b.g.begin(&b.g.reading)
	n, err := b.ReadCloser.Read(p)
	b.g.end(&b.g.reading)
	if err != nil && err != io.EOF && b.g.uploadCut() {
		err = errClientStalled
	}
	return n, err
}
