package relay

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the relay's Prometheus series, served on the admin listener.
// Labels never carry a token, a cookie or a query: hosts are the granted
// names only (anything else counts as "other"), so a visitor cannot grow
// the series by inventing Host headers.
type metrics struct {
	reg        *prometheus.Registry
	sessions   *prometheus.GaugeVec   // agent, transport
	requests   *prometheus.CounterVec // host, code (status class)
	respBytes  *prometheus.CounterVec // host
	ranges     *prometheus.CounterVec // host
	ttfb       *prometheus.HistogramVec
	refusals   *prometheus.CounterVec // reason
	websockets prometheus.Gauge
	streams    prometheus.Gauge

	liveSent sync.Map // host → *atomic.Int64: response bytes, counted as they are written
}

// sent is the live count of response bytes for host.
func (m *metrics) sent(host string) *atomic.Int64 {
	if v, ok := m.liveSent.Load(host); ok {
		return v.(*atomic.Int64)
	}
	v, _ := m.liveSent.LoadOrStore(host, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// Refusal reasons, the values of burrow_relay_refusals_total's reason label.
const (
	refusedBadToken    = "bad_token"
	refusedHost        = "host_not_granted"
	refusedClientLimit = "client_limit"
	refusedOverBudget  = "over_budget"
)

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "burrow_relay_sessions", Help: "Agent sessions connected, by agent and transport.",
		}, []string{"agent", "transport"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_relay_requests_total", Help: "Public requests answered, by host and status class (2xx…5xx).",
		}, []string{"host", "code"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_relay_response_bytes_total", Help: "Response body bytes sent to visitors, by host.",
		}, []string{"host"}),
		ranges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_relay_range_requests_total", Help: "Requests with a Range header (video seeks), by host.",
		}, []string{"host"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "burrow_relay_ttfb_seconds",
			Help:    "Time from a request's arrival to its response headers, by host.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15, 60},
		}, []string{"host"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "burrow_relay_refusals_total", Help: "Agents and visitors refused, by reason.",
		}, []string{"reason"}),
		websockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burrow_relay_websockets", Help: "Upgraded connections (WebSockets) open.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "burrow_relay_tunnel_streams", Help: "Tunnel streams open, over all sessions.",
		}),
	}
	m.reg.MustRegister(m.sessions, m.requests, m.respBytes, m.ranges, m.ttfb, m.refusals, m.websockets, m.streams,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{refusedBadToken, refusedHost, refusedClientLimit, refusedOverBudget} {
		m.refusals.WithLabelValues(r) // present at zero from the start
	}
	return m
}

// statusClass is "2xx" for 204, and so on.
func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return string(rune('0'+code/100)) + "xx"
}

// observedWriter records what a handler answers: the status, when the
// headers went out, and the body bytes. Unwrap keeps http.ResponseController
// (flush, hijack, deadlines) working through it.
type observedWriter struct {
	http.ResponseWriter
	code    int
	headers time.Time // when the status was written
	// Counted as each write goes out, so that a long download shows live.
	bytes   prometheus.Counter
	live    *atomic.Int64
	written int64  // body bytes, for the access log
	route   *route // the route that served it, for the access log
}

func (w *observedWriter) WriteHeader(code int) {
	if w.code == 0 || (w.code >= 100 && w.code < 200) {
		w.code = code
		w.headers = time.Now()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *observedWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code, w.headers = http.StatusOK, time.Now()
	}
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	if w.live != nil {
		w.live.Add(int64(n))
		w.bytes.Add(float64(n))
	}
	return n, err
}

func (w *observedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writer wraps w to count what it sends for host ("" when not granted).
func (m *metrics) writer(w http.ResponseWriter, host string) *observedWriter {
	if host == "" {
		host = "other"
	}
	return &observedWriter{ResponseWriter: w, bytes: m.respBytes.WithLabelValues(host), live: m.sent(host)}
}

// observe records one finished request for host ("" when not granted).
func (m *metrics) observe(host string, r *http.Request, w *observedWriter, start time.Time) {
	if host == "" {
		host = "other"
	}
	code := w.code
	if code == 0 {
		code = http.StatusSwitchingProtocols // hijacked: an upgrade
	}
	m.requests.WithLabelValues(host, statusClass(code)).Inc()
	if r.Header.Get("Range") != "" {
		m.ranges.WithLabelValues(host).Inc()
	}
	if !w.headers.IsZero() {
		m.ttfb.WithLabelValues(host).Observe(w.headers.Sub(start).Seconds())
	}
}

// accessLog writes one line for a finished public request. It goes through
// the same redactor as every log line: an apikey in the query is never logged.
func (s *Server) accessLog(r *http.Request, w *observedWriter, start time.Time) {
	attrs := []any{
		"client", clientAddr(r, s.trusted(r.RemoteAddr)), "host", canonicalHost(r.Host), "method", r.Method,
		"path", r.URL.RequestURI(), "proto", r.Proto, "status", w.code, "bytes", w.written,
		"duration", time.Since(start).Round(time.Microsecond),
	}
	if !w.headers.IsZero() {
		attrs = append(attrs, "ttfb", w.headers.Sub(start).Round(time.Microsecond))
	}
	if rt := w.route; rt != nil {
		attrs = append(attrs, "agent", rt.agent, "transport", rt.session.Transport())
	}
	s.log.Info("access", attrs...)
}
