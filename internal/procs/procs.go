// Package procs sets how many CPUs the process runs Go code on by how much it
// has to do: one while it carries a few requests, every CPU beyond.
package procs

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Scaler runs the process on one CPU while at most a few units of work
// (public requests on the relay, tunnel streams on the agent) are active,
// and on every CPU from the moment more are, until the count has stayed low
// for a while.
//
// A proxied byte passes a chain of goroutines, each waking the next: on one
// CPU the runtime runs the next on the same thread, on more it often wakes
// another thread for it, at a cost of about a fifth of the CPU a download
// takes. But on one CPU the runtime looks for sockets that became ready only
// when it has nothing else to run, or every 10 ms: a burst of work would
// hold up every other request until it ends.
type Scaler struct {
	most, above int
	hold        time.Duration
	set         func(int) int // runtime.GOMAXPROCS

	active atomic.Int64
	mu     sync.Mutex
	wide   bool        // guarded by mu; running on most CPUs
	narrow *time.Timer // guarded by mu; a pending return to one CPU, or nil
}

// Above and Hold are the default Scaler's: more than two units active (one
// viewer's video and the Stash page's WebSocket are two) take every CPU, and
// the process returns to one a second after the count fell back.
const (
	Above = 2
	Hold  = time.Second
)

// New returns a Scaler that runs the process on most CPUs while more than
// above units are active, and on one from hold after the count fell back.
// It sets one CPU now.
func New(most, above int, hold time.Duration) *Scaler {
	return newScaler(most, above, hold, runtime.GOMAXPROCS)
}

func newScaler(most, above int, hold time.Duration, set func(int) int) *Scaler {
	s := &Scaler{most: most, above: above, hold: hold, set: set}
	set(1)
	return s
}

var current atomic.Pointer[Scaler]

// Use makes s the process's Scaler, the one Current returns; nil for none.
func Use(s *Scaler) { current.Store(s) }

// Current is the process's Scaler, or nil. A unit of work calls Enter and
// Leave on the same Scaler.
func Current() *Scaler { return current.Load() }

// Enter counts a unit of work as active. Enter and Leave on a nil Scaler do
// nothing.
func (s *Scaler) Enter() {
	if s != nil && s.active.Add(1) > int64(s.above) {
		s.widen()
	}
}

// Leave ends a unit of work that Enter counted.
func (s *Scaler) Leave() {
	if s != nil && s.active.Add(-1) <= int64(s.above) {
		s.narrowLater()
	}
}

func (s *Scaler) widen() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.narrow != nil {
		s.narrow.Stop()
		s.narrow = nil
	}
	if !s.wide {
		s.wide = true
		s.set(s.most)
	}
}

func (s *Scaler) narrowLater() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wide && s.narrow == nil {
		s.narrow = time.AfterFunc(s.hold, s.narrowNow)
	}
}

func (s *Scaler) narrowNow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.narrow = nil
	if s.wide && s.active.Load() <= int64(s.above) {
		s.wide = false
		s.set(1)
	}
}
