package transport

import (
	"testing"

	"github.com/hashicorp/yamux"
)

func TestYamuxConfig(t *testing.T) {
	c := yamuxConfig()
	if err := yamux.VerifyConfig(c); err != nil {
		t.Fatalf("VerifyConfig: %v", err)
	}
	if c.WindowBudget == yamuxConfig().WindowBudget {
		t.Error("two sessions share one window budget")
	}
}

func TestWindowBudget(t *testing.T) {
	b := &windowBudget{limit: 3 << 20}
	steps := []struct {
		reserve, release int
		want             bool
	}{
		{reserve: 2 << 20, want: true},
		{reserve: 2 << 20, want: false}, // past the limit
		{reserve: 1 << 20, want: true},  // up to it
		{release: 2 << 20},
		{reserve: 2 << 20, want: true},
	}
	for i, s := range steps {
		if s.release > 0 {
			b.Release(s.release)
			continue
		}
		if got := b.Reserve(s.reserve); got != s.want {
			t.Errorf("step %d: Reserve(%d MiB) = %v with %d MiB in use, want %v", i, s.reserve>>20, got, b.used.Load()>>20, s.want)
		}
	}
}
