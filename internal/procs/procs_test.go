package procs

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeProcs records what a Scaler sets.
type fakeProcs struct {
	mu  sync.Mutex
	now int
	log []int
}

func (f *fakeProcs) set(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.now
	f.now = n
	f.log = append(f.log, n)
	return old
}

func (f *fakeProcs) get() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func TestOneCPUUntilMoreThanAboveAreActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeProcs{}
		s := newScaler(4, 2, time.Second, f.set)
		if f.get() != 1 {
			t.Fatalf("a new Scaler set %d CPUs, want 1", f.get())
		}
		s.Enter()
		s.Enter()
		if f.get() != 1 {
			t.Fatalf("two active: %d CPUs, want 1", f.get())
		}
		s.Enter()
		if f.get() != 4 {
			t.Fatalf("three active: %d CPUs, want 4", f.get())
		}
		s.Leave()
		time.Sleep(999 * time.Millisecond)
		if f.get() != 4 {
			t.Fatalf("back to two for less than the hold: %d CPUs, want 4", f.get())
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if f.get() != 1 {
			t.Fatalf("back to two for the hold: %d CPUs, want 1", f.get())
		}
		if len(f.log) != 3 {
			t.Errorf("set called %v, want [1 4 1]", f.log)
		}
	})
}

func TestBurstDuringHoldKeepsEveryCPU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeProcs{}
		s := newScaler(2, 1, time.Second, f.set)
		s.Enter()
		s.Enter() // wide
		s.Leave() // narrowing in 1 s
		time.Sleep(500 * time.Millisecond)
		s.Enter() // wide again: the pending narrowing is off
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if f.get() != 2 {
			t.Fatalf("two active, a burst during the hold: %d CPUs, want 2", f.get())
		}
		s.Leave()
		s.Leave()
		time.Sleep(time.Second + time.Millisecond)
		synctest.Wait()
		if f.get() != 1 || len(f.log) != 3 {
			t.Fatalf("all done: %d CPUs, set %v; want 1 after [1 2 1]", f.get(), f.log)
		}
	})
}

func TestNilScalerDoesNothing(t *testing.T) {
	var s *Scaler
	s.Enter()
	s.Leave()
	Use(nil)
	if Current() != nil {
		t.Fatal("Current after Use(nil) is not nil")
	}
}

func TestConcurrentUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeProcs{}
		s := newScaler(8, 2, 10*time.Millisecond, f.set)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				for range 100 {
					s.Enter()
					time.Sleep(time.Millisecond)
					s.Leave()
				}
			})
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if f.get() != 1 || s.active.Load() != 0 {
			t.Fatalf("after the load: %d CPUs, %d active; want 1 and 0", f.get(), s.active.Load())
		}
	})
}
