package admin

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/burrow-tunnel/burrow/internal/redact"
)

// recentKept is how many warnings and errors Recent keeps.
const recentKept = 20

// Recent keeps the last warnings and errors a process logged, masked like
// every log line, for its status page.
type Recent struct {
	mu    sync.Mutex
	lines []string // guarded by mu; oldest first
}

// Handler returns a handler that passes every record to next and keeps a
// copy of each warning and error.
func (r *Recent) Handler(next slog.Handler) slog.Handler {
	keep := redact.Handler(slog.NewTextHandler(recentWriter{r}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return tee{next, keep}
}

// Lines are the kept lines, newest first.
func (r *Recent) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.lines))
	for i, l := range r.lines {
		out[len(out)-1-i] = l
	}
	return out
}

// recentWriter takes the text handler's lines: one Write a record.
type recentWriter struct{ r *Recent }

func (w recentWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if len(w.r.lines) == recentKept {
		w.r.lines = append(w.r.lines[:0:0], w.r.lines[1:]...)
	}
	w.r.lines = append(w.r.lines, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// tee hands each record to both of its handlers that take its level.
type tee struct{ a, b slog.Handler }

func (t tee) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t tee) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.a.Enabled(ctx, r.Level) {
		err = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		_ = t.b.Handle(ctx, r)
	}
	return err
}

func (t tee) WithAttrs(as []slog.Attr) slog.Handler {
	return tee{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t tee) WithGroup(name string) slog.Handler {
	return tee{t.a.WithGroup(name), t.b.WithGroup(name)}
}
