// Package liveset keeps the things alive now (a relay's agent sessions, an
// agent's relay sessions), for status pages and metrics: register one, get
// back the function that unregisters it.
package liveset

import "sync"

// Set is a set of live things; its zero value is empty and ready.
type Set[T comparable] struct {
	mu sync.Mutex
	m  map[T]struct{} // guarded by mu
}

// Add registers v until the function it returns is called.
func (s *Set[T]) Add(v T) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[T]struct{}{}
	}
	s.m[v] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, v)
	}
}

// Items is what is live now, in no particular order.
func (s *Set[T]) Items() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]T, 0, len(s.m))
	for v := range s.m {
		out = append(out, v)
	}
	return out
}
