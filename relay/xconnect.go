package relay

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
)

// Browsers open a websocket over HTTP/2 or HTTP/3 only when the server
// advertises extended CONNECT (RFC 8441, RFC 9220); otherwise they use a
// separate HTTP/1.1 connection. Go's HTTP/2 server does not advertise it
// (unless GODEBUG=http2xconnect=1), but quic-go's HTTP/3 server always does.
// So a websocket may arrive as CONNECT with :protocol "websocket": the relay
// turns it into the HTTP/1.1 upgrade that Stash understands and copies the
// frames, which are the same bytes on both sides once the handshake is done.

// websocketGUID is RFC 6455's constant for Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// isExtendedConnect reports whether r is an RFC 8441/9220 extended CONNECT.
func isExtendedConnect(r *http.Request) bool {
	return r.Method == http.MethodConnect && extendedProtocol(r) != ""
}

// extendedProtocol is the :protocol pseudo-header: Go's HTTP/2 server keeps it
// as a header, quic-go's HTTP/3 server puts it in Proto.
func extendedProtocol(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return r.Header.Get(":protocol")
	case 3:
		if r.Proto != "HTTP/3.0" {
			return r.Proto
		}
	}
	return ""
}

// serveExtendedConnect bridges an extended-CONNECT websocket to the route's
// service as an HTTP/1.1 upgrade on one tunnel stream.
func (s *Server) serveExtendedConnect(w http.ResponseWriter, r *http.Request, rt *route) {
	if !strings.EqualFold(extendedProtocol(r), "websocket") {
		http.Error(w, "extended CONNECT is only for websockets here", http.StatusNotImplemented)
		return
	}
	in, conn, ok := s.openRouteStream(w, r, rt)
	if !ok {
		return
	}
	ctx := in.Context()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	key := newWebsocketKey()
	out := in.Clone(ctx)
	out.Method = http.MethodGet
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.Body, out.ContentLength, out.TransferEncoding, out.RequestURI = nil, 0, nil, ""
	out.Header.Set("Sec-WebSocket-Key", key)
	out.Header.Set("Sec-WebSocket-Version", "13")
	// rewrite asks for the upgrade: Connection: Upgrade, Upgrade: websocket.
	s.rewrite(&httputil.ProxyRequest{In: in, Out: out})

	br, resp, err := sendUpgrade(conn, out)
	if err != nil {
		s.proxyError(w, in, err)
		return
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// The service refused the upgrade (401 without a login, say): pass its answer on.
		copyHeaders(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != websocketAccept(key) {
		s.proxyError(w, in, errors.New("relay: service answered the websocket upgrade with a wrong Sec-WebSocket-Accept"))
		return
	}
	resp.Header.Del("Sec-WebSocket-Accept")
	copyHeaders(w.Header(), resp.Header)
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}

	s.metrics.websockets.Inc()
	defer s.metrics.websockets.Dec()
	// A relay that drains closes WebSockets at once (see serveUpgrade).
	defer context.AfterFunc(s.draining, func() { conn.Close() })()
	// Client to service: its end half-closes the stream, as a TCP FIN would.
	up := make(chan struct{})
	go func() {
		defer close(up)
		if _, err := io.Copy(conn, r.Body); err == nil {
			if cw, ok := conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
				return
			}
		}
		conn.Close()
	}()
	// Service to client, flushed as it comes; an idle websocket waits here for ever.
	_, _ = io.Copy(flushWriter{w: w, rc: rc}, br)
	conn.Close()
	r.Body.Close()
	<-up
}

func copyHeaders(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
}

func routeAddr(rt *route) string {
	return routeHost(rt) + ":80"
}

func newWebsocketKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
