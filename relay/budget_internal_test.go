package relay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The budget refuses while the memory is over it, and logs each crossing once.
func TestMemoryBudget(t *testing.T) {
	var out bytes.Buffer
	b := newMemoryBudget(100, slog.New(slog.NewTextHandler(&out, nil)))
	var used uint64
	b.sample = func() uint64 { return used }
	steps := []struct {
		mib  uint64
		over bool
	}{{50, false}, {101, true}, {150, true}, {99, false}, {100, false}, {200, true}}
	for _, s := range steps {
		used = s.mib << 20
		b.check()
		if b.exceeded() != s.over {
			t.Errorf("at %d MiB of 100: exceeded %v, want %v", s.mib, b.exceeded(), s.over)
		}
	}
	if n := strings.Count(out.String(), "over its memory budget"); n != 2 {
		t.Errorf("logged going over %d times, want 2:\n%s", n, out.String())
	}
	if n := strings.Count(out.String(), "back under"); n != 1 {
		t.Errorf("logged coming back %d times, want 1:\n%s", n, out.String())
	}
	if m := runtimeMemory(); m < 1<<20 || m > 1<<40 {
		t.Errorf("runtimeMemory() = %d bytes", m)
	}
}
