// Package admin is the admin listener of a relay or an agent: Prometheus
// metrics, liveness and readiness, the status as JSON and as a page, and
// pprof when asked for. It listens on loopback by default; it carries no
// secret (tokens, cookies and API keys never reach it).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the admin section of relay.yaml and agent.yaml.
type Config struct {
	// Listen is the listener's address; empty turns it off. Keep it on
	// loopback (or a private network): it shows agents, routes and
	// addresses, though no secret.
	Listen string `mapstructure:"listen"`
	// Pprof serves Go's profiler at /debug/pprof/.
	Pprof bool `mapstructure:"pprof"`
}

// Validate checks Listen.
func (c Config) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("%q is not host:port (\"\" turns the admin listener off): %v", c.Listen, err)
	}
	return nil
}

// Options describe what the listener serves.
type Options struct {
	// Listen is the address, such as "127.0.0.1:7836".
	Listen string
	// Pprof serves /debug/pprof/ too.
	Pprof bool
	// Gatherer has the metrics served at /metrics.
	Gatherer prometheus.Gatherer
	// Status is the process's state, served as JSON at /status.json; its
	// Ready decides /readyz.
	Status func() Status
	// Page renders the status page at / from a Status.
	Page func(w http.ResponseWriter, st Status)
	Log  *slog.Logger
}

// Status is what /status.json, /readyz and the status page show. Detail is
// the relay's or the agent's own view (sessions, routes, certificates).
type Status struct {
	Role   string    `json:"role"`
	Ready  bool      `json:"ready"`
	Reason string    `json:"reason,omitempty"` // why not ready
	Since  time.Time `json:"since"`
	Detail any       `json:"detail"`
	// Errors are the last warnings and errors logged, newest first.
	Errors []string `json:"recent_errors"`
	// Checks are the states /readyz lists beside its verdict, such as each
	// relay connection's.
	Checks map[string]string `json:"checks,omitempty"`
}

// Server is a bound admin listener.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds the admin listener.
func Listen(o Options) (*Server, error) {
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"alive": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := o.Status()
		code := http.StatusOK
		if !st.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"ready": st.Ready, "reason": st.Reason, "checks": st.Checks})
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, o.Status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		o.Page(w, o.Status())
	})
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ln: ln, log: log, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}, nil
}

// Close releases the listener of a server that will not Run.
func (s *Server) Close() error { return s.ln.Close() }

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	shut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shut)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(sctx); err != nil {
			s.srv.Close()
		}
	})
	err := s.srv.Serve(s.ln)
	if !stop() {
		<-shut // Shutdown runs: wait for it
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
