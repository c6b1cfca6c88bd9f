package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// transferTimeout bounds a loopback transfer of n bytes: far beyond any
// plausible time (10 MB/s), yet finite.
func transferTimeout(n int64) time.Duration {
	return 30*time.Second + time.Duration(float64(n)/10e6*float64(time.Second))
}

// scenarioSingle is scenario 1: one large download, its rate and the
// proxy's CPU per GiB.
func (b *bench) scenarioSingle(ctx context.Context, targets []*target) {
	b.eachRun(ctx, 1, targets, func(ctx context.Context, t *target) error {
		return b.bulk(ctx, t, 1, mS1MBps, mS1CPU, mS1Switch)
	})
}

// scenarioParallel is scenario 2: parallel large downloads, aggregate rate.
func (b *bench) scenarioParallel(ctx context.Context, targets []*target) {
	b.eachRun(ctx, 2, targets, func(ctx context.Context, t *target) error {
		return b.bulk(ctx, t, b.plan.parallel, mS2MBps, mS2CPU, "")
	})
}

// bulk downloads the big file n times at once, each on its own connection,
// and records the aggregate rate, the path's CPU seconds per GiB and, when
// switchID is set, its context switches per GiB.
func (b *bench) bulk(ctx context.Context, t *target, n int, rateID, cpuID, switchID string) error {
	pids := t.procs()
	cpu0, sw0 := cpuSeconds(pids), contextSwitches(pids)
	moved, d, err := b.downloadBig(ctx, []*target{t}, n)
	cpu1, sw1 := cpuSeconds(pids), contextSwitches(pids)
	if err != nil {
		return err
	}
	b.rep.add(rateID, t.key, mbps(moved, d))
	if len(pids) > 0 {
		b.rep.add(cpuID, t.key, (cpu1-cpu0)/(float64(moved)/gib))
		if switchID != "" && sw1 >= sw0 {
			b.rep.add(switchID, t.key, float64(sw1-sw0)/1000/(float64(moved)/gib))
		}
	}
	return nil
}

// downloadBig downloads the big file n times at once, each on its own
// connection, download i through targets[i % len(targets)], and returns
// the bytes moved and how long that took.
func (b *bench) downloadBig(ctx context.Context, targets []*target, n int) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(int64(n)*b.plan.bigSize))
	defer cancel()
	clients := make([]*http.Client, len(targets))
	for i, t := range targets {
		clients[i] = t.client(n, true)
		defer clients[i].CloseIdleConnections()
	}
	start := time.Now()
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for i := range n {
		j := i % len(targets)
		g.Go(func() error {
			m, err := download(gctx, clients[j], targets[j], bigFile, fetch{want: b.plan.bigSize})
			total.Add(m)
			return err
		})
	}
	err := g.Wait()
	return total.Load(), time.Since(start), err
}

// scenarioWrk is scenario 3: many small requests from wrk.
func (b *bench) scenarioWrk(ctx context.Context, targets []*target) {
	if !b.tools.wrk {
		b.rep.scenarioNote(3, "skipped: wrk not installed (%s)", installHint)
		return
	}
	b.eachRun(ctx, 3, targets, func(ctx context.Context, t *target) error {
		res, err := runWrk(ctx, t, b.plan.wrkDuration)
		if err != nil {
			return err
		}
		b.rep.add(mS3RPS, t.key, res.rps)
		b.rep.add(mS3P50, t.key, res.p50)
		b.rep.add(mS3P99, t.key, res.p99)
		b.rep.add(mS3Err, t.key, float64(res.errors))
		if res.errors > 0 {
			return fmt.Errorf("wrk: %d errors (%s)", res.errors, res.errorText)
		}
		return nil
	})
}

// scenarioInteractive is scenario 4: sequential small requests on one
// keep-alive connection, idle, while parallel large downloads run as fast
// as they can, and while as many viewers read a video each at viewerRate.
func (b *bench) scenarioInteractive(ctx context.Context, targets []*target) {
	b.eachRun(ctx, 4, targets, func(ctx context.Context, t *target) error {
		// The downloads stop when the sequential requests are done.
		ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		idle, err := b.sequential(ctx, t)
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		b.rep.add(mS4Idle50, t.key, percentile(idle, 50))
		b.rep.add(mS4Idle99, t.key, percentile(idle, 99))

		loaded, bulk, err := b.sequentialDuring(ctx, t, 0)
		if err != nil {
			return err
		}
		b.rep.add(mS4Load50, t.key, percentile(loaded, 50))
		b.rep.add(mS4Load99, t.key, percentile(loaded, 99))
		b.rep.add(mS4Bulk, t.key, bulk)

		viewing, _, err := b.sequentialDuring(ctx, t, viewerRate)
		if err != nil {
			return fmt.Errorf("viewers: %w", err)
		}
		b.rep.add(mS4View50, t.key, percentile(viewing, 50))
		b.rep.add(mS4View99, t.key, percentile(viewing, 99))
		return nil
	})
}

// viewerRate is how fast a viewer of scenario 4 reads its video: a
// 120 Mbit/s 4K file. What a viewer does not read yet waits in the proxy.
const viewerRate = 15_000_000

// sequentialDuring runs sequential while plan.parallel downloads of the big
// file repeat, read at rate bytes/s each (0: as fast as they come), and
// returns the latencies and the downloads' aggregate MB/s meanwhile.
func (b *bench) sequentialDuring(ctx context.Context, t *target, rate int64) ([]time.Duration, float64, error) {
	bulkCtx, stopBulk := context.WithCancel(ctx)
	defer stopBulk()
	bc := t.client(b.plan.parallel, true)
	defer bc.CloseIdleConnections()
	started := make([]atomic.Int64, b.plan.parallel) // bytes per download
	var wg sync.WaitGroup
	errs := make(chan error, b.plan.parallel)
	for i := range b.plan.parallel {
		wg.Go(func() {
			for bulkCtx.Err() == nil {
				_, err := download(bulkCtx, bc, t, bigFile, fetch{want: b.plan.bigSize, progress: &started[i], rate: rate})
				if err != nil && bulkCtx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}
	// Measure only once every download is moving, and a paced one has
	// filled what the path buffers ahead of its viewer.
	deadline := time.Now().Add(10 * time.Second)
	for i := range started {
		for started[i].Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	settle := 200 * time.Millisecond
	if rate > 0 {
		settle = 2 * time.Second
	}
	time.Sleep(settle)
	before := sum(started)
	start := time.Now()
	lat, err := b.sequential(ctx, t)
	elapsed := time.Since(start)
	moved := sum(started) - before
	stopBulk()
	wg.Wait()
	close(errs)
	if berr := <-errs; berr != nil {
		return nil, 0, fmt.Errorf("download during the interactive test: %w", berr)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("under load: %w", err)
	}
	return lat, mbps(moved, elapsed), nil
}

func sum(xs []atomic.Int64) int64 {
	var s int64
	for i := range xs {
		s += xs[i].Load()
	}
	return s
}

// sequential times interactiveN requests for the small file on one
// keep-alive connection, after a short warm-up.
func (b *bench) sequential(ctx context.Context, t *target) ([]time.Duration, error) {
	c := t.client(1, true)
	defer c.CloseIdleConnections()
	for range 10 {
		if _, err := getSmall(ctx, c, t); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, b.plan.interactiveN)
	for range b.plan.interactiveN {
		d, err := getSmall(ctx, c, t)
		if err != nil {
			return nil, err
		}
		lat = append(lat, d)
	}
	return lat, nil
}

// scenarioTTFB is scenario 5: time to first byte on fresh connections, for
// the small file and for a Range request into the big one (a seek).
func (b *bench) scenarioTTFB(ctx context.Context, targets []*target) {
	b.eachRun(ctx, 5, targets, func(ctx context.Context, t *target) error {
		for range b.plan.ttfbSamples {
			d, err := ttfb(ctx, t, smallFile, "")
			if err != nil {
				return err
			}
			b.rep.add(mS5Fresh, t.key, ms(d))
		}
		// A 64 KiB range leaves little behind when abandoned; an open one
		// leaves the rest of the file to whatever buffers and windows the
		// path holds, in front of the next request's answer.
		for range b.plan.ttfbSamples {
			from := rand.Int64N(b.plan.bigSize - mib)
			d, err := ttfb(ctx, t, bigFile, fmt.Sprintf("bytes=%d-%d", from, from+64*kib-1))
			if err != nil {
				return fmt.Errorf("bounded range: %w", err)
			}
			b.rep.add(mS5Bounded, t.key, ms(d))
		}
		for range b.plan.ttfbSamples {
			d, err := ttfb(ctx, t, bigFile, openRange(rand.Int64N(b.plan.bigSize-mib)))
			if err != nil {
				return fmt.Errorf("range: %w", err)
			}
			b.rep.add(mS5Range, t.key, ms(d))
		}
		return nil
	})
	b.rep.scenarioNote(5, "each sample is its own run here: %d fresh connections per path and run, all in the median and min–max", b.plan.ttfbSamples)
}

// errFirst keeps the first few distinct errors of a concurrent test.
type errFirst struct {
	mu   sync.Mutex
	n    int
	msgs []string
}

func (e *errFirst) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.msgs) < 3 {
		e.msgs = append(e.msgs, err.Error())
	}
}

func (e *errFirst) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return nil
	}
	return fmt.Errorf("%d errors, first: %s", e.n, strings.Join(e.msgs, "; "))
}
