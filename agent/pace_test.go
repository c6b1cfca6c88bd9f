package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// fakeUplink is a bottleneck driven by the fake clock: the bulk streams
// send at the scheduler's rate (twice the link's when unpaced), the queue
// grows by what exceeds the link and drains at it, and a round trip
// reports the queue a packet met when it was sent, one round trip ago.
type fakeUplink struct {
	sched *scheduler
	base  time.Duration // the round trip with empty queues
	limit float64       // queue capacity, bytes

	mu       sync.Mutex
	link     float64       // bytes/s; guarded by mu
	extra    time.Duration // someone else's queue, added to every round trip; guarded by mu
	last     time.Time
	queue    float64 // bytes
	sent     float64 // by the bulk streams, since the start
	hist     []queueAt
	srtt     time.Duration
	sentFrom float64 // sent when measure began
	from     time.Time
	queues   []time.Duration // queueing delays seen since measure began
}

type queueAt struct {
	at time.Time
	q  time.Duration
}

func newFakeUplink(base time.Duration, linkBitsPerSec float64) *fakeUplink {
	return &fakeUplink{base: base, link: linkBitsPerSec / 8, limit: 600e3, last: time.Now(), srtt: base}
}

func (f *fakeUplink) PathDelay() protocol.PathDelay {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	rate := f.sched.bulkRate()
	if rate == 0 {
		rate = 2 * f.link
	}
	dt := now.Sub(f.last).Seconds()
	f.last = now
	f.queue = min(max(f.queue+(rate-f.link)*dt, 0), f.limit)
	f.sent += min(rate, f.link) * dt
	q := time.Duration(f.queue / f.link * float64(time.Second))
	f.hist = append(f.hist, queueAt{now, q})
	seen := f.hist[0].q
	for i := len(f.hist) - 1; i >= 0; i-- {
		if now.Sub(f.hist[i].at) >= f.base+f.hist[i].q {
			seen = f.hist[i].q
			f.hist = f.hist[i:]
			break
		}
	}
	f.srtt += (f.base + seen + f.extra - f.srtt) / 4
	if !f.from.IsZero() {
		f.queues = append(f.queues, q)
	}
	return protocol.PathDelay{RTT: f.srtt, MinRTT: f.base, Delivered: uint64(f.sent)}
}

func (f *fakeUplink) set(linkBitsPerSec float64, extra time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.link, f.extra = linkBitsPerSec/8, extra
}

// measure starts counting the bulk streams' share of the link and the
// queue they cause.
func (f *fakeUplink) measure() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.from, f.sentFrom, f.queues = time.Now(), f.sent, nil
}

// result is the link share and the median and worst queueing delay since
// measure.
func (f *fakeUplink) result() (share float64, median, worst time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	share = (f.sent - f.sentFrom) / time.Since(f.from).Seconds() / f.link
	q := slices.Clone(f.queues)
	slices.Sort(q)
	return share, q[len(q)/2], q[len(q)-1]
}

// runUplink runs a scheduler over a fake uplink with one bulk stream that
// always has data, calls fn, and stops.
func runUplink(t *testing.T, up *fakeUplink, fn func()) {
	s := newScheduler(slog.New(slog.NewTextHandler(io.Discard, nil)), up)
	up.sched = s
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.run(ctx) })
	wg.Go(func() {
		// The video: keeps the controller sampling, as bulk writes do.
		for ctx.Err() == nil {
			s.reserve(minChunk)
			time.Sleep(time.Millisecond)
		}
	})
	fn()
	cancel()
	wg.Wait()
}

func TestControllerFillsTheLinkWithAShortQueue(t *testing.T) {
	for _, tc := range []struct {
		name string
		base time.Duration
		bits float64
	}{
		{"home uplink", 40 * time.Millisecond, 50e6},
		{"slow line far away", 100 * time.Millisecond, 10e6},
		{"fibre", 10 * time.Millisecond, 500e6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				up := newFakeUplink(tc.base, tc.bits)
				runUplink(t, up, func() {
					time.Sleep(5 * time.Second)
					up.measure()
					time.Sleep(20 * time.Second)
				})
				share, median, worst := up.result()
				t.Logf("link share %.1f%%, queue median %v, worst %v", share*100, median, worst)
				if share < 0.95 {
					t.Errorf("bulk got %.1f%% of the link, want ≥ 95%%", share*100)
				}
				if median > 2*queueTarget || worst > 4*queueTarget {
					t.Errorf("queue median %v, worst %v; want within %v and %v", median, worst, 2*queueTarget, 4*queueTarget)
				}
			})
		})
	}
}

// When the link slows down (another device of the home takes half), the
// controller cuts the bulk rate until the queue is short again; when it
// speeds up, the rate rises to fill it.
func TestControllerFollowsTheLink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newFakeUplink(40*time.Millisecond, 50e6)
		runUplink(t, up, func() {
			time.Sleep(10 * time.Second)
			up.set(25e6, 0)
			time.Sleep(5 * time.Second)
			up.measure()
			time.Sleep(10 * time.Second)
			share, median, _ := up.result()
			if share < 0.9 || median > 2*queueTarget {
				t.Errorf("at half the rate: link share %.1f%%, queue median %v", share*100, median)
			}
			if r := up.sched.bulkRate(); r > 1.2*25e6/8 {
				t.Errorf("bulk rate %.1f Mbit/s over a 25 Mbit/s link", r*8/1e6)
			}
			up.set(50e6, 0)
			time.Sleep(10 * time.Second)
			up.measure()
			time.Sleep(10 * time.Second)
			share, median, _ = up.result()
			if share < 0.9 || median > 2*queueTarget {
				t.Errorf("back at full rate: link share %.1f%%, queue median %v", share*100, median)
			}
		})
	})
}

// A queue the bulk streams did not make (a backup on another machine of
// the home, not slowed by anything the agent does) must not starve them.
func TestControllerDoesNotYieldToAForeignQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newFakeUplink(40*time.Millisecond, 50e6)
		runUplink(t, up, func() {
			time.Sleep(5 * time.Second)
			up.set(50e6, 60*time.Millisecond)
			time.Sleep(standingFor + 5*time.Second)
			up.measure()
			time.Sleep(5 * time.Second)
			share, _, _ := up.result()
			if share < 0.8 {
				t.Errorf("behind a foreign queue the video got %.1f%% of the link", share*100)
			}
		})
	})
}

// An idle controller samples nothing, and a long-idle one forgets its rate.
func TestControllerSleepsWhileNoBulkStreamSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up := newFakeUplink(40*time.Millisecond, 50e6)
		s := newScheduler(slog.New(slog.NewTextHandler(io.Discard, nil)), up)
		up.sched = s
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.run(ctx); close(done) }()
		for range 2000 {
			s.reserve(minChunk)
			time.Sleep(time.Millisecond)
		}
		if s.bulkRate() == 0 {
			t.Fatal("no bulk rate after 2 s of bulk writes")
		}
		time.Sleep(bulkIdle + time.Second)
		up.mu.Lock()
		samples := len(up.hist)
		up.mu.Unlock()
		time.Sleep(5 * time.Second)
		up.mu.Lock()
		if len(up.hist) != samples {
			t.Errorf("the controller sampled the path %d times while idle", len(up.hist)-samples)
		}
		up.mu.Unlock()
		time.Sleep(rateForget)
		s.reserve(minChunk)
		synctest.Wait()
		if r := s.bulkRate(); r != 0 {
			t.Errorf("after %v idle the bulk rate is still %.0f B/s, want unpaced", rateForget, r)
		}
		cancel()
		<-done
	})
}
