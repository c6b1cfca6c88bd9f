package relay

import (
	"context"
	"log/slog"
	rtmetrics "runtime/metrics"
	"sync/atomic"
	"time"
)

// budgetCheck is how often the relay compares its memory with limits.memory_mib.
const budgetCheck = 250 * time.Millisecond

// memoryBudget refuses new public requests while the relay's memory is over
// limits.memory_mib: the requests in flight go on (and free what they hold
// as they finish), new ones get a 503 page, and no visitor stalls the rest.
// It counts what the Go runtime holds from the system and has not given
// back, close to the relay's resident memory.
type memoryBudget struct {
	limit uint64 // bytes; 0 turns the budget off
	log   *slog.Logger
	over  atomic.Bool
	used  atomic.Uint64 // at the last check
	// sample reads the memory in use; tests replace it.
	sample func() uint64
}

func newMemoryBudget(mib int, log *slog.Logger) *memoryBudget {
	return &memoryBudget{limit: uint64(mib) << 20, log: log, sample: runtimeMemory}
}

// exceeded reports whether new work is refused now.
func (b *memoryBudget) exceeded() bool { return b.over.Load() }

// run checks the memory every budgetCheck until ctx ends, and logs each
// change between over and under the budget.
func (b *memoryBudget) run(ctx context.Context) error {
	if b.limit == 0 {
		return nil
	}
	t := time.NewTicker(budgetCheck)
	defer t.Stop()
	for {
		b.check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (b *memoryBudget) check() {
	used := b.sample()
	b.used.Store(used)
	over := used > b.limit
	if b.over.Swap(over) == over {
		return
	}
	if over {
		b.log.Warn("relay over its memory budget: new requests get a 503 page until the ones in flight free memory",
			"used_mib", used>>20, "limits.memory_mib", b.limit>>20)
	} else {
		b.log.Info("relay back under its memory budget: taking new requests", "used_mib", used>>20, "limits.memory_mib", b.limit>>20)
	}
}

var memorySamples = []rtmetrics.Sample{
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

// runtimeMemory is what the Go runtime holds from the system, less what it
// has released back.
func runtimeMemory() uint64 {
	s := make([]rtmetrics.Sample, len(memorySamples))
	copy(s, memorySamples)
	rtmetrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}
