// Package origin is an HTTP/1.1 server that behaves like Stash wherever a
// proxy in front of Stash matters. `burrow demo` serves it when no Stash is
// running, and the end-to-end tests and benchmarks put the tunnel in front of it.
//
// What it copies from Stash (see "What Stash expects of a proxy" in DESIGN.md):
//   - absolute URLs are built as scheme + Host + X-Forwarded-Prefix, https only
//     when X-Forwarded-Proto is exactly "https"; the prefix is used as sent,
//     so a trailing slash shows up as "//" in the URLs;
//   - it never strips a prefix itself: any unknown path without an extension
//     answers the index page, so /stash/scene/1/stream reaching it is HTML;
//   - X-Forwarded-For is split on ", " and its first entry must be an IP
//     (else 400), as Stash's request-IP middleware does;
//   - with a login: /healthz stays open, /graphql and paths with a file
//     extension answer 401 + WWW-Authenticate: FormBased, other pages a 302
//     to {prefix}/login?returnURL=…; credentials are the ApiKey header,
//     ?apikey= or a session cookie;
//   - the graphql-transport-ws websocket sends nothing while idle;
//   - /scene/{id}/stream is a file (Range, 206, 416), /scene/{id}/stream.mp4
//     a never-ending chunked "transcode" that stops when the client goes away.
package origin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Version is what the origin answers to a GraphQL version query.
const Version = "v0.27.0-burrow-demo"

// DefaultLargeFileSize is the size of /files/large.bin when Options.LargeFileSize is 0.
const DefaultLargeFileSize = 64 << 20

// SmallFileSize is the size of /files/small.bin (the first bytes of the large file's stream).
const SmallFileSize = 1 << 10

// Options configure a Server; the zero value is a Stash without a login.
type Options struct {
	LargeFileSize int64 // size of /files/large.bin; 0 means DefaultLargeFileSize
	// LargeFilePath, if set, is a file written by WriteLargeFile that
	// /files/large.bin serves instead of computing its bytes, the way Stash
	// serves a scene's video: from disk, which the kernel sends without
	// copying it through the process (sendfile).
	LargeFilePath string
	RequireLogin  bool         // behave like a Stash with credentials set
	APIKey        string       // accepted as ApiKey header or ?apikey= when RequireLogin
	Username      string       // accepted by POST /login; "admin" when empty
	Password      string       // accepted by POST /login; "admin" when empty
	ExternalHost  string       // like Stash's external_host: replaces scheme://host in built URLs
	Tripwire      bool         // without a login, answer 403 forever after a public client IP in X-Forwarded-For
	Log           *slog.Logger // nil discards
}

// Server is the origin's http.Handler.
type Server struct {
	opts Options
	log  *slog.Logger
	obs  *Observations
	mux  *http.ServeMux
}

var _ http.Handler = (*Server)(nil)

// modTime is the Last-Modified of every served file, fixed so validators are stable.
var modTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a Server configured by o.
func New(o Options) *Server {
	if o.LargeFileSize <= 0 {
		o.LargeFileSize = DefaultLargeFileSize
	}
	if o.Username == "" {
		o.Username = "admin"
	}
	if o.Password == "" {
		o.Password = "admin"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Log, obs: newObservations(), mux: http.NewServeMux()}
	s.routes()
	return s
}

// Observations returns the record of what the origin has seen, for tests.
func (s *Server) Observations() *Observations { return s.obs }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.serveHealthz)
	m.HandleFunc("POST /graphql", s.serveGraphQLPost)
	m.HandleFunc("GET /graphql", s.serveGraphQLGet)
	m.HandleFunc("GET /scene/{id}/stream", s.serveSceneStream)
	m.HandleFunc("GET /scene/{id}/screenshot", s.serveScreenshot)
	m.HandleFunc("GET /scene/{id}/stream.mp4", s.serveTranscode("video/mp4"))
	m.HandleFunc("GET /scene/{id}/stream.webm", s.serveTranscode("video/webm"))
	m.HandleFunc("GET /scene/{id}/stream.mkv", s.serveTranscode("video/x-matroska"))
	m.HandleFunc("GET /stream.mp4", s.serveTranscode("video/mp4"))
	m.HandleFunc("GET /files/large.bin", s.serveLargeFile)
	m.HandleFunc("GET /files/small.bin", s.serveSmallFile)
	m.HandleFunc("POST /upload", s.serveUpload)
	m.HandleFunc("GET /events", s.serveEvents)
	m.HandleFunc("GET /headers", s.serveHeaders)
	m.HandleFunc("POST /headers", s.serveHeaders)
	m.HandleFunc("GET /login", s.serveLoginPage)
	m.HandleFunc("POST /login", s.serveLoginPost)
	m.HandleFunc("GET /logout", s.serveLogout)
	m.HandleFunc("GET /", s.servePage)
}

// ServeHTTP runs Stash's middleware (health check, request IP, tripwire, login) and then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.obs.record(r)
	sw := &statusWriter{ResponseWriter: w}
	start := time.Now()
	defer func() {
		// Only the path: the query may hold an apikey.
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "dur", time.Since(start))
	}()
	w = sw
	w.Header().Set("X-Content-Type-Options", "nosniff")

	if r.URL.Path == "/healthz" {
		s.mux.ServeHTTP(w, r)
		return
	}
	ip, err := requestIP(r)
	if err != nil {
		s.log.Warn("refused: bad client address, as Stash would", "err", err)
		http.Error(w, "Invalid IP address", http.StatusBadRequest)
		return
	}
	if s.opts.Tripwire && !s.opts.RequireLogin {
		if !isLocalIP(ip) && s.obs.trip(ip.String()) {
			s.log.Warn("tripwire: accessed from the public internet without a login", "ip", ip)
		}
		if s.obs.Tripped() != "" {
			http.Error(w, "Stash is exposed to the public internet without authentication, and is not serving any more content to protect your privacy.", http.StatusForbidden)
			return
		}
	}
	if s.opts.RequireLogin && !s.authenticated(r) && !allowUnauthenticated(r) {
		s.refuse(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// BaseURL is the base Stash builds absolute URLs from: scheme + "://" + Host + X-Forwarded-Prefix.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host + prefix(r)
}

func (s *Server) baseURL(r *http.Request) string {
	if s.opts.ExternalHost != "" {
		return s.opts.ExternalHost + prefix(r)
	}
	return BaseURL(r)
}

// prefix is X-Forwarded-Prefix as sent: like the Stash in DESIGN.md, no trailing slash is trimmed.
func prefix(r *http.Request) string { return r.Header.Get("X-Forwarded-Prefix") }

func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func (s *Server) serveHeaders(w http.ResponseWriter, r *http.Request) {
	got, _ := s.obs.Last(r.URL.Path)
	writeJSON(w, http.StatusOK, got)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// statusWriter remembers the status for the request log. Unwrap lets
// http.ResponseController and the websocket library reach Flush and Hijack.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom lets a file reach the server's own ReadFrom, which sends it with
// sendfile, as Stash's file server does.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return io.Copy(w.ResponseWriter, r)
}

// Flush is here for code that asserts http.Flusher instead of using a ResponseController.
func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// readHeaderTimeout cuts slow-header clients; a variable so a test can show
// that it does not reach upgraded (hijacked) connections.
var readHeaderTimeout = 10 * time.Second

// shutdownGrace is how long Serve lets in-flight requests finish once ctx ends.
const shutdownGrace = 2 * time.Second

// Serve serves h on ln over plain HTTP/1.1 until ctx ends, then shuts down and
// returns once every handler, hijacked websockets included, has returned.
// Requests' contexts end with ctx, so streams and websockets stop at once.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	var handlers sync.WaitGroup
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			h.ServeHTTP(w, r)
		}),
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if s, ok := h.(*Server); ok {
		srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-served:
		err = fmt.Errorf("origin: serve: %w", err)
		_ = srv.Close()
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		if serr := srv.Shutdown(sctx); serr != nil {
			_ = srv.Close()
		}
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = fmt.Errorf("origin: serve: %w", serr)
		}
	}
	handlers.Wait()
	return err
}
