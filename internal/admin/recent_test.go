package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// Recent keeps the last warnings and errors, masked, newest first, and
// passes every record on.
func TestRecent(t *testing.T) {
	var out bytes.Buffer
	var r Recent
	log := slog.New(r.Handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))).With("role", "relay")
	log.Debug("quiet")
	log.Info("connected")
	log.Warn("service unreachable", "url", "http://stash/scene/1/stream?apikey=SECRET")
	for i := range recentKept + 5 {
		log.Error("failure", "n", i)
	}
	if got := strings.Count(out.String(), "\n"); got != recentKept+8 {
		t.Errorf("next got %d lines, want every record (%d)", got, recentKept+8)
	}
	lines := r.Lines()
	if len(lines) != recentKept {
		t.Fatalf("kept %d lines, want %d", len(lines), recentKept)
	}
	if want := fmt.Sprintf("n=%d", recentKept+4); !strings.Contains(lines[0], want) || !strings.Contains(lines[0], "role=relay") {
		t.Errorf("newest line %q, want %s and the logger's attributes", lines[0], want)
	}
	for _, l := range lines {
		if strings.Contains(l, "SECRET") || strings.Contains(l, "connected") || strings.Contains(l, "quiet") {
			t.Errorf("kept %q", l)
		}
	}
	r2 := Recent{}
	slog.New(r2.Handler(slog.DiscardHandler)).Warn("x", "u", "/?apikey=SECRET")
	if l := r2.Lines(); len(l) != 1 || strings.Contains(l[0], "SECRET") {
		t.Errorf("kept %q, want the line with the apikey masked", l)
	}
}
