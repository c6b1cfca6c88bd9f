package relay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/burrow-tunnel/burrow/internal/pipe"
)

// Upgraded connections (Stash's WebSocket) are proxied here rather than by
// httputil.ReverseProxy, whose upgrade path keeps the request's handler
// goroutine, with its deep stack, and two 32 KiB copy buffers for the whole
// life of the connection. Thousands of idle subscriptions then cost the relay
// little: two goroutines and two small buffers each (see pipe.Copy).

// isUpgrade reports an HTTP/1.1 request to switch protocols.
func isUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade")
}

// serveUpgrade sends the upgrade request through a tunnel stream and, when
// the service switches protocols, joins the client's connection to the stream.
//
// release gives back the client's slot (limits.streams_per_client): the
// joined connection holds it for as long as it lasts.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request, rt *route, release func()) {
	holding := true // the slot is this goroutine's until the join takes it
	defer func() {
		if holding {
			release()
		}
	}()
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("Upgrade")), "h2c") {
		// Requests inside an h2c connection would reach the service without
		// the relay's forwarded headers.
		http.Error(w, "h2c upgrades are not proxied", http.StatusBadRequest)
		return
	}
	in, conn, ok := s.openRouteStream(w, r, rt)
	if !ok {
		return
	}
	ctx := in.Context()
	joined := false // set by this goroutine only
	defer func() {
		if !joined {
			conn.Close()
		}
	}()
	// A client that goes away before the switch ends the stream too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	upType := r.Header.Get("Upgrade")
	out := in.Clone(ctx)
	out.RequestURI = ""
	out.Body, out.ContentLength, out.TransferEncoding = nil, 0, nil
	s.rewrite(&httputil.ProxyRequest{In: in, Out: out}) // keeps Connection: Upgrade and Upgrade: upType

	br, resp, err := sendUpgrade(conn, out)
	if err != nil {
		s.proxyError(w, in, err)
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The service refused the upgrade (a 401 without a login, say): pass its answer on.
		defer resp.Body.Close()
		removeHopHeaders(resp.Header)
		copyHeaders(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), upType) {
		s.proxyError(w, in, fmt.Errorf("relay: service switched to %q, the client asked for %q", resp.Header.Get("Upgrade"), upType))
		return
	}
	// Headers the relay itself set (HSTS on HTTPS) go out with the service's.
	hdr := w.Header().Clone()
	copyHeaders(hdr, resp.Header)
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.proxyError(w, in, fmt.Errorf("relay: hijack: %w", err))
		return
	}
	if err := writeSwitch(cbuf.Writer, hdr); err != nil {
		client.Close()
		return
	}
	// Bytes that either side sent behind its headers are already in a buffer.
	if err := drain(conn, cbuf.Reader); err != nil {
		client.Close()
		return
	}
	if err := drain(client, br); err != nil {
		client.Close()
		return
	}
	if !stop() {
		client.Close() // the request was cancelled and the stream closed meanwhile
		return
	}
	if !s.trackUpgrade() {
		client.Close()
		return
	}
	joined, holding = true, false
	s.metrics.websockets.Inc()
	// Its own goroutine, not the handler's deep stack: thousands of idle
	// WebSockets each keep only what the join needs.
	go func() {
		defer s.upgrades.Done()
		defer release()
		defer s.metrics.websockets.Dec()
		// A relay that drains closes WebSockets at once: they never end by
		// themselves, and the page reconnects its WebSocket (to a replica,
		// or to the relay once it is back).
		defer context.AfterFunc(s.draining, func() { conn.Close(); client.Close() })()
		pipe.Join(halfCloseable(client), conn.(pipe.HalfCloser))
	}()
}

// openRouteStream opens a tunnel stream to the route's agent for a request
// that bypasses the reverse proxy. It returns the request carrying the route
// (for rewrite and error pages), or writes the error page and reports false.
func (s *Server) openRouteStream(w http.ResponseWriter, r *http.Request, rt *route) (*http.Request, net.Conn, bool) {
	in := r.WithContext(context.WithValue(r.Context(), routeKey, rt))
	conn, err := s.dialRoute(in.Context(), "tcp", routeAddr(rt))
	if err != nil {
		s.proxyError(w, in, err)
		return nil, nil, false
	}
	return in, conn, true
}

// sendUpgrade writes an upgrade request on a tunnel stream and reads the
// service's answer; the reader holds any bytes the service sent behind it.
func sendUpgrade(conn net.Conn, out *http.Request) (*bufio.Reader, *http.Response, error) {
	bw := bufio.NewWriterSize(conn, 4<<10)
	if err := out.Write(bw); err != nil {
		return nil, nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		return nil, nil, err
	}
	return br, resp, nil
}

// writeSwitch writes the 101 answer to the client.
func writeSwitch(w *bufio.Writer, hdr http.Header) error {
	if _, err := fmt.Fprintf(w, "HTTP/1.1 101 %s\r\n", http.StatusText(http.StatusSwitchingProtocols)); err != nil {
		return err
	}
	if err := hdr.Write(w); err != nil {
		return err
	}
	if _, err := w.WriteString("\r\n"); err != nil {
		return err
	}
	return w.Flush()
}

// drain writes what r has buffered to w.
func drain(w io.Writer, r *bufio.Reader) error {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := r.Peek(n)
	_, err := w.Write(b)
	return err
}

// halfCloseable gives a hijacked connection CloseWrite, closing it whole when
// it has no half-close of its own.
func halfCloseable(c net.Conn) pipe.HalfCloser {
	if hc, ok := c.(pipe.HalfCloser); ok {
		return hc
	}
	return fullCloser{c}
}

type fullCloser struct{ net.Conn }

func (c fullCloser) CloseWrite() error { return c.Close() }

// trackUpgrade counts one more joined connection, unless the relay is
// shutting down.
func (s *Server) trackUpgrade() bool {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if s.upClosing {
		return false
	}
	s.upgrades.Add(1)
	return true
}
