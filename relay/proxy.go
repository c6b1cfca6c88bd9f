package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-tunnel/burrow/internal/pipe"
	"github.com/burrow-tunnel/burrow/internal/procs"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Each pooled HTTP/1.1 connection of the proxy's Transport is one tunnel
// stream. The Transport pools by URL host, so the outgoing URL's host names the
// route id ("r17.burrow.invalid"): a reconnect gives new ids, so streams of a
// dead session are never reused.
const routeHostSuffix = ".burrow.invalid"

type ctxKey int

const (
	routeKey ctxKey = iota + 1 // the request's *route
	stallKey                   // the request's *stallGuard, with limits.stalled_client
	connKey                    // the public connection (net.Conn) a request came on
)

func (s *Server) newProxy() *httputil.ReverseProxy {
	fallback := &http.Transport{
		DialContext:           s.dialAborting,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// The default 4 KiB bufio buffers: large body reads bypass them, and
		// an upgraded connection (a WebSocket) keeps them for its whole life.
		// No ResponseHeaderTimeout: streamTransport applies
		// limits.response_header to both ways (HLS segments and long GraphQL
		// calls may take long before their headers).
	}
	s.transport = &streamTransport{dial: s.dialRoute, fallback: fallback, reroute: s.reroute, unpublished: s.unpublished, maxIdle: 1024, idleTimeout: 90 * time.Second,
		responseHeader: s.cfg.Limits.ResponseHeader}
	return &httputil.ReverseProxy{
		Rewrite:      s.rewrite,
		Transport:    s.transport,
		BufferPool:   pipe.BufferPool{},
		ErrorHandler: s.proxyError,
		ErrorLog:     s.errorLog(),
	}
}

// dialRoute opens a tunnel stream to the agent that owns the route named by addr.
func (s *Server) dialRoute(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	id, ok := routeID(host)
	if !ok {
		return nil, fmt.Errorf("relay: bad route address %q", addr)
	}
	rt := s.reg.byRouteID(id)
	if rt == nil {
		return nil, errAgentOffline
	}
	st, err := rt.session.OpenStream(ctx)
	if err == nil {
		rt.streams.Add(1)
		s.metrics.streams.Inc()
		st = &countedStream{Stream: st, n: rt.streams, all: s.metrics.streams}
	}
	if err != nil {
		if errors.Is(err, protocol.ErrSessionClosed) {
			return nil, errAgentOffline
		}
		return nil, fmt.Errorf("relay: open tunnel stream: %w", err)
	}
	hdr, _ := protocol.StreamHeader{Kind: protocol.KindHTTP, RouteID: rt.id}.AppendBinary(nil)
	if _, err := st.Write(hdr); err != nil {
		st.Close()
		return nil, fmt.Errorf("relay: write stream header: %w", err)
	}
	return &statusConn{Stream: st}, nil
}

// reroute picks another replica of the request's route when the route's
// session has ended (see streamTransport.reroute).
func (s *Server) reroute(ctx context.Context) (string, bool) {
	rt, _ := ctx.Value(routeKey).(*route)
	if rt == nil {
		return "", false
	}
	// A stream fails as its session ends, and the session says so a moment later.
	select {
	case <-rt.session.Done():
	case <-time.After(sessionEndWait):
		return "", false // the session is alive: the failure was the stream's own
	}
	other := s.reg.pick(rt.host, rt.prefix, rt)
	if other == nil || other.prefix != rt.prefix || other.agent != rt.agent {
		return "", false // only a replica of the same route, never a shorter prefix
	}
	return routeHost(other), true
}

// unpublished reports whether the route named by an outgoing URL host is
// gone from the route table (its session ended, or its agent is going away).
func (s *Server) unpublished(host string) bool {
	id, ok := routeID(host)
	return ok && s.reg.byRouteID(id) == nil
}

// routeID is the route id in an outgoing URL host, as routeHost writes it.
func routeID(host string) (uint32, bool) {
	idStr, ok := strings.CutSuffix(host, routeHostSuffix)
	if !ok || len(idStr) < 2 {
		return 0, false
	}
	id, err := strconv.ParseUint(idStr[1:], 10, 32)
	return uint32(id), err == nil
}

// sessionEndWait bounds the wait for a session's end after one of its
// streams failed.
const sessionEndWait = 250 * time.Millisecond

// routeHost names rt in outgoing URLs (see routeHostSuffix).
func routeHost(rt *route) string {
	return "r" + strconv.FormatUint(uint64(rt.id), 10) + routeHostSuffix
}

// countedStream is a tunnel stream counted in its session's open streams
// until it is closed or aborted.
type countedStream struct {
	protocol.Stream
	n    *atomic.Int64    // the session's
	all  prometheus.Gauge // the relay's
	once sync.Once
}

func (c *countedStream) done() {
	c.once.Do(func() {
		c.n.Add(-1)
		c.all.Dec()
	})
}

func (c *countedStream) Close() error {
	c.done()
	return c.Stream.Close()
}

func (c *countedStream) Abort() {
	c.done()
	c.Stream.Abort()
}

// dialAborting is dialRoute for http.Transport, which closes a connection
// once it is done with it or gives up on its answer (the visitor left, was
// cut, or the service was too slow): then the agent must stop sending at
// once, not after yamux's close delay.
func (s *Server) dialAborting(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.dialRoute(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return abortingConn{c.(*statusConn)}, nil
}

type abortingConn struct{ *statusConn }

func (c abortingConn) Close() error {
	c.Abort()
	return nil
}

// statusConn reads the agent's stream status before the first byte of the
// service's answer, so that the request bytes are pipelined behind the header.
type statusConn struct {
	protocol.Stream
	once sync.Once
	err  error
}

func (c *statusConn) Read(p []byte) (int, error) {
	c.once.Do(c.readStatus)
	if c.err != nil {
		return 0, c.err
	}
	return c.Stream.Read(p)
}

func (c *statusConn) readStatus() { c.err = protocol.ReadStatus(c.Stream) }

// Write reports the agent's refusal of the stream when that is why a write
// failed. An agent that cannot reach its service writes that status and
// closes the stream; over QUIC the close also stops the relay's writes, and
// can fail one before anything read the status. The visitor then gets the
// page for a service that is down rather than a tunnel error.
func (c *statusConn) Write(p []byte) (int, error) {
	n, err := c.Stream.Write(p)
	if err != nil {
		_ = c.Stream.SetReadDeadline(time.Now().Add(statusWait))
		c.once.Do(c.readStatus)
		var st *protocol.StatusError
		if errors.As(c.err, &st) {
			return n, st
		}
	}
	return n, err
}

// statusWait bounds the wait for the agent's status after a failed write:
// a status, if any, came before the close that failed the write.
const statusWait = time.Second

// rewrite sets the outgoing request's URL and headers: no hop-by-hop ones
// but an upgrade's, and the forwarded ones (DESIGN.md's table). Every request
// bound for a service comes through here (see hop.go).
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey).(*route)
	outboundHeader(pr.In, pr.Out.Header)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = routeHost(rt)
	if rt.prefix != "" {
		pr.Out.URL.Path = stripPrefix(pr.In.URL.Path, rt.prefix)
		if pr.In.URL.RawPath != "" {
			pr.Out.URL.RawPath = stripPrefix(pr.In.URL.RawPath, rt.prefix)
		}
	}
	pr.Out.Host = pr.In.Host
	setForwarded(pr, rt.prefix, s.trusted(pr.In.RemoteAddr))
	if _, ok := pr.Out.Header["User-Agent"]; !ok {
		// Not Go's default, as httputil.ReverseProxy does: the upgrade ways
		// write the request themselves.
		pr.Out.Header.Set("User-Agent", "")
	}
}

func stripPrefix(p, prefix string) string {
	rest := strings.TrimPrefix(p, prefix)
	if rest == "" {
		return "/"
	}
	return rest
}

func (s *Server) trusted(remote string) bool {
	trusted := s.current().TrustedProxies
	if len(trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	for _, p := range trusted {
		if p.Contains(ap.Addr().Unmap()) {
			return true
		}
	}
	return false
}

// setForwarded writes the forwarded headers. Client-sent values are dropped
// unless the peer is a trusted proxy, whose chain is kept and extended.
func setForwarded(pr *httputil.ProxyRequest, prefix string, trusted bool) {
	in, out := pr.In, pr.Out.Header
	peer := clientAddr(in, false)
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	host := in.Host
	port := ""
	if a, ok := in.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			port = strconv.Itoa(int(ap.Port()))
		}
	}
	realIP := clientAddr(in, trusted)
	xff := peer
	if trusted {
		// The entry the trusted proxy itself added is the last one; the ones
		// before it are the client's word.
		if prior := strings.Join(in.Header.Values("X-Forwarded-For"), ", "); prior != "" {
			xff = prior + ", " + peer
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			host = v
		}
		if v := in.Header.Get("X-Forwarded-Port"); v != "" {
			port = v
		}
	}
	// Not kept even from a trusted proxy: httputil.ReverseProxy drops it
	// before Rewrite, and Stash ignores it.
	out.Del("Forwarded")
	out.Set("X-Real-IP", realIP)
	out.Set("X-Forwarded-For", xff)
	out.Set("X-Forwarded-Proto", proto)
	out.Set("X-Forwarded-Host", host)
	if port != "" {
		out.Set("X-Forwarded-Port", port)
	} else {
		out.Del("X-Forwarded-Port")
	}
	if prefix != "" {
		out.Set("X-Forwarded-Prefix", prefix)
	} else {
		out.Del("X-Forwarded-Prefix")
	}
}

// ServeHTTP routes a public request by Host and longest prefix to its agent.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	sc := procs.Current() // one CPU while a few requests are served (see procs)
	sc.Enter()
	defer sc.Leave()
	start := time.Now()
	host := canonicalHost(r.Host)
	label := "" // the metrics' host: only published names, a bounded set
	if s.reg.hasHost(host) {
		label = host
	}
	w := s.metrics.writer(rw, label)
	defer func() {
		s.metrics.observe(label, r, w, start)
		if s.current().AccessLog {
			s.accessLog(r, w, start)
		}
	}()
	rt := s.reg.lookup(host, r.URL.Path)
	if rt == nil && s.cfg.AnyHost != "" {
		rt = s.reg.lookup(s.cfg.AnyHost, r.URL.Path)
	}
	w.route = rt
	if rt == nil {
		switch {
		case s.reg.hasHost(host):
			s.page(w, r, http.StatusNotFound, pageNoRoute, host)
		case s.granted(host):
			s.page(w, r, http.StatusServiceUnavailable, pageAgentOffline, host)
		default:
			s.page(w, r, http.StatusNotFound, pageUnknownHost, host)
		}
		return
	}
	if rt.prefix != "" && r.URL.Path == rt.prefix && isGetOrHead(r.Method) {
		// "/stash" → "/stash/", as nginx does for a location with a trailing slash.
		u := *r.URL
		u.Path = rt.prefix + "/"
		u.RawPath = ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	addr := limitAddr(r, s.trusted(r.RemoteAddr))
	if guard := rt.access.Load(); guard != nil {
		checked, ok := guard.Check(w, r, addr)
		if !ok {
			return
		}
		r = checked
		defer func() { guard.Observe(r, addr, w.code) }()
	}
	if s.budget.exceeded() {
		s.metrics.refusals.WithLabelValues(refusedOverBudget).Inc()
		s.page(w, r, http.StatusServiceUnavailable, pageOverBudget, host)
		return
	}
	release, ok := s.clients.acquire(r.Context(), addr)
	if !ok {
		s.metrics.refusals.WithLabelValues(refusedClientLimit).Inc()
		s.limited(w, r, host, addr)
		return
	}
	if isUpgrade(r) {
		s.serveUpgrade(w, r, rt, release)
		return
	}
	defer release()
	if isExtendedConnect(r) {
		s.serveExtendedConnect(w, r, rt)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), routeKey, rt))
	if limit := s.current().Limits.StalledClient; limit > 0 {
		s.serveWatched(w, r, limit)
		return
	}
	s.proxy.ServeHTTP(w, r)
}

func isGetOrHead(m string) bool { return m == http.MethodGet || m == http.MethodHead }

func canonicalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (s *Server) granted(host string) bool {
	for _, g := range s.current().Agents {
		if g.Allows(host) {
			return true
		}
	}
	return false
}

func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	rt, _ := r.Context().Value(routeKey).(*route)
	var st *protocol.StatusError
	switch {
	case uploadStalled(r):
		// The read of its body failed, which on HTTP/1.1 also ends the
		// request's context; the visitor may still read an answer.
		s.log.Debug("upload stalled", "host", r.Host, "err", err)
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		http.Error(w, "408 Request Timeout: the upload sent nothing for too long", http.StatusRequestTimeout)
	case errors.Is(err, errServiceSlow):
		s.log.Warn("service sent no response headers in time", "host", r.Host, "agent", rt.agent, "limit", s.cfg.Limits.ResponseHeader)
		s.page(w, r, http.StatusGatewayTimeout, pageServiceSlow, r.Host)
	case r.Context().Err() != nil:
		// The client went away; nobody reads a page.
		s.log.Debug("client gone", "host", r.Host, "err", err)
		w.WriteHeader(499)
	case errors.Is(err, errAgentOffline):
		s.page(w, r, http.StatusServiceUnavailable, pageAgentOffline, r.Host)
	case errors.As(err, &st) && st.Code == protocol.StatusRefused:
		s.log.Warn("home agent refused the request", "host", r.Host, "agent", rt.agent, "err", st.Message)
		s.page(w, r, http.StatusBadGateway, pageServiceRefused, r.Host)
	case errors.As(err, &st) && st.Code == protocol.StatusServiceUnreachable:
		s.log.Warn("service at home unreachable", "host", r.Host, "agent", rt.agent, "err", st.Message)
		s.page(w, r, http.StatusBadGateway, pageServiceDown, r.Host)
	default:
		agent := ""
		if rt != nil {
			agent = rt.agent
		}
		s.log.Warn("proxy error", "host", r.Host, "agent", agent, "err", err)
		s.page(w, r, http.StatusBadGateway, pageTunnelError, r.Host)
	}
}
