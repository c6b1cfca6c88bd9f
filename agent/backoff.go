package agent

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is the reconnect delay: exponential with full jitter, capped, and
// reset after a connection that stayed up.
type backoff struct {
	base, cap time.Duration
	attempt   int
	// rand returns a value in [0,1); replaced in tests.
	rand func() float64
}

func newBackoff() *backoff {
	return &backoff{base: 500 * time.Millisecond, cap: 30 * time.Second, rand: rand.Float64}
}

// unreachableCap caps the delay after a relay did not answer at all: trying
// one costs a handshake attempt, and a relay that restarts (or a relay of
// several that comes back) gets its sessions within it.
const unreachableCap = 4 * time.Second

// next returns the delay before the next attempt: uniformly in [d/2, d) for
// d = base·2^attempt, capped.
func (b *backoff) next() time.Duration { return b.nextWithin(b.cap) }

// nextWithin is next with the cap c, when lower.
func (b *backoff) nextWithin(c time.Duration) time.Duration {
	d := b.base << min(b.attempt, 16)
	if c = min(c, b.cap); d > c || d <= 0 {
		d = c
	}
	b.attempt++
	return d/2 + time.Duration(b.rand()*float64(d/2))
}

func (b *backoff) reset() { b.attempt = 0 }

// wait sleeps d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
