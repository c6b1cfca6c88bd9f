// Package logthrottle keeps an event that a peer can repeat at will (a wrong
// token, a refused handshake) from flooding the log: the first occurrence
// from a source is logged at once, in full, and the rest are counted and
// summed up in one line per interval.
package logthrottle

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Throttle logs the first event of each (message, source) at once and
// counts the repeats. It tracks at most MaxSources at a time; events from
// further sources are counted together. Run writes the sums.
type Throttle struct {
	log      *slog.Logger
	interval time.Duration

	mu       sync.Mutex
	sources  map[key]*count // guarded by mu
	overflow map[event]int  // guarded by mu: events from untracked sources, by message
}

// MaxSources bounds the sources a Throttle tracks: its memory, and the lines
// it writes at once in one interval.
const MaxSources = 64

type event struct {
	level slog.Level
	msg   string
}

type key struct {
	event
	source string
}

type count struct {
	lastLine time.Time // when the last line for this source was written
	repeats  int       // events since then
}

// New returns a Throttle that writes to log and sums up once per interval.
func New(log *slog.Logger, interval time.Duration) *Throttle {
	return &Throttle{log: log, interval: interval, sources: map[key]*count{}, overflow: map[event]int{}}
}

// Log writes msg with args at level, unless it was written for source
// already in this interval: then it only counts it. msg should be constant
// and source short (an address); args may vary and are written only with
// the first event.
func (t *Throttle) Log(level slog.Level, source, msg string, args ...any) {
	k := key{event{level, msg}, source}
	t.mu.Lock()
	if c, ok := t.sources[k]; ok {
		c.repeats++
		t.mu.Unlock()
		return
	}
	if len(t.sources) >= MaxSources {
		t.overflow[k.event]++
		t.mu.Unlock()
		return
	}
	t.sources[k] = &count{lastLine: time.Now()}
	t.mu.Unlock()
	t.log.Log(context.Background(), level, msg, args...)
}

// Run writes the sums once per interval until ctx ends, and what it
// counted last before it returns. A source is forgotten once an interval
// has passed since its last line without an event: its next event is
// written at once again.
func (t *Throttle) Run(ctx context.Context) {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			t.flush()
		case <-ctx.Done():
			t.flush()
			return
		}
	}
}

// flush writes one line per source that repeated an event, and one per
// event that came from sources beyond MaxSources.
func (t *Throttle) flush() {
	type line struct {
		key
		n      int
		within time.Duration
	}
	var lines, others []line
	now := time.Now()
	t.mu.Lock()
	for k, c := range t.sources {
		switch {
		case c.repeats > 0:
			lines = append(lines, line{k, c.repeats, now.Sub(c.lastLine).Round(time.Second)})
			c.lastLine, c.repeats = now, 0
		case now.Sub(c.lastLine) >= t.interval:
			delete(t.sources, k)
		}
	}
	for e, n := range t.overflow {
		others = append(others, line{key{event: e}, n, t.interval})
		delete(t.overflow, e)
	}
	t.mu.Unlock()
	ctx := context.Background()
	for _, l := range lines {
		t.log.Log(ctx, l.level, l.msg+" (repeated)", "from", l.source, "times", l.n, "within", l.within)
	}
	for _, l := range others {
		t.log.Log(ctx, l.level, l.msg+" (repeated)", "from", "other sources", "times", l.n, "within", l.within)
	}
}
