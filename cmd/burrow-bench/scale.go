package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// scaleConcurrency bounds how many websockets open or echo at once.
const scaleConcurrency = 100

// scenarioScale is scenario 6: many concurrent streams, then many idle websockets.
func (b *bench) scenarioScale(ctx context.Context, targets []*target) {
	b.eachRun(ctx, 6, targets, b.streams)
	b.eachRun(ctx, 6, targets, b.websockets)
	b.rep.scenarioNote(6, "each proxy is restarted before each test. RSS growth of the streams test is the peak during the test "+
		"over the fresh process's (sampled every 50 ms); RSS per websocket is (RSS while holding − RSS of the fresh process) / websockets opened")
}

// streams runs plan.streams concurrent downloads of the 1 MiB file, each on
// its own new connection, all released at once, through freshly restarted
// proxies (no pooled tunnel streams, a memory baseline of a new process).
func (b *bench) streams(ctx context.Context, t *target) error {
	if t.restart != nil {
		if err := t.restart(); err != nil {
			return fmt.Errorf("restart before the streams test: %w", err)
		}
	}
	n := b.plan.streams
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(int64(n)*mib))
	defer cancel()
	c := t.client(n, false)
	defer c.CloseIdleConnections()
	pids := t.procs()
	rss0, each0 := rssBytes(pids), rssEach(pids)
	peak, peakEach := rss0, slices.Clone(each0)
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	if len(pids) > 0 {
		sampler.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stopSampling:
					return
				case <-tick.C:
					each := rssEach(pids)
					var sum int64
					for i, v := range each {
						peakEach[i] = max(peakEach[i], v)
						sum += v
					}
					peak = max(peak, sum)
				}
			}
		})
	}
	var errs errFirst
	var moved atomic.Int64
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-gate
			m, err := download(ctx, c, t, mediumFile, fetch{want: mib})
			moved.Add(m)
			if err != nil {
				errs.add(err)
			}
		})
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	d := time.Since(start)
	close(stopSampling)
	sampler.Wait()
	b.rep.add(mS6StrErr, t.key, float64(errs.n))
	b.rep.add(mS6StrTime, t.key, d.Seconds())
	b.rep.add(mS6StrMBps, t.key, mbps(moved.Load(), d))
	if len(pids) > 0 {
		b.rep.add(mS6StrRSS, t.key, float64(peak-rss0)/mib)
	}
	if t.burrow && len(pids) == 2 {
		b.rep.add(mS6StrRelay, t.key, float64(peakEach[0]-each0[0])/mib)
		b.rep.add(mS6StrAgent, t.key, float64(peakEach[1]-each0[1])/mib)
	}
	return errs.err()
}

// websockets opens plan.websockets websockets to the echo server through a
// freshly restarted path, holds them idle, measures the path's memory, then
// checks that each still echoes.
func (b *bench) websockets(ctx context.Context, t *target) error {
	if t.restart == nil {
		b.rep.note(mS6WSRSS, t.key, "no proxy")
		b.rep.note(mS6WSErr, t.key, "not run")
		return nil
	}
	if err := t.restart(); err != nil {
		return fmt.Errorf("restart before the websocket test: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 180*time.Second)
	defer cancel()
	time.Sleep(500 * time.Millisecond)
	pids := t.procs()
	rss0 := rssBytes(pids)
	each0 := rssEach(pids)

	n := b.plan.websockets
	conns := make([]*websocket.Conn, n)
	hc := t.client(scaleConcurrency, true)
	var errs errFirst
	start := time.Now()
	parallel(n, func(i int) {
		dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
		defer dcancel()
		c, _, err := websocket.Dial(dctx, "ws://"+t.addr+"/", &websocket.DialOptions{HTTPClient: hc, Host: wsHost})
		if err != nil {
			errs.add(fmt.Errorf("open: %w", err))
			return
		}
		conns[i] = c
	})
	opened := n - errs.n
	b.rep.add(mS6WSOpen, t.key, time.Since(start).Seconds())
	defer parallel(n, func(i int) {
		if conns[i] != nil {
			conns[i].CloseNow()
		}
	})

	// Idle, as the UI's subscription websocket is for minutes.
	time.Sleep(2 * time.Second)
	rss1 := rssBytes(pids)
	each1 := rssEach(pids)

	msg := []byte("ping")
	parallel(n, func(i int) {
		c := conns[i]
		if c == nil {
			return
		}
		ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
		defer ecancel()
		if err := c.Write(ectx, websocket.MessageText, msg); err != nil {
			errs.add(fmt.Errorf("echo write: %w", err))
			return
		}
		_, got, err := c.Read(ectx)
		if err != nil {
			errs.add(fmt.Errorf("echo read: %w", err))
			return
		}
		if string(got) != string(msg) {
			errs.add(fmt.Errorf("echo: got %q", got))
		}
	})
	b.rep.add(mS6WSErr, t.key, float64(errs.n))
	if opened > 0 {
		b.rep.add(mS6WSRSS, t.key, float64(rss1-rss0)/kib/float64(opened))
		if t.burrow && len(pids) == 2 {
			per := func(i int) float64 { return float64(each1[i]-each0[i]) / kib / float64(opened) }
			b.logf("  websockets %s: relay %.1f KiB + agent %.1f KiB per websocket", t.name, per(0), per(1))
			b.rep.add(mS6WSRelay, t.key, per(0))
			b.rep.add(mS6WSAgent, t.key, per(1))
		}
	}
	return errs.err()
}

// rssEach is the resident set of each of pids with its descendants.
func rssEach(pids []int) []int64 {
	out := make([]int64, len(pids))
	for i, p := range pids {
		out[i] = rssBytes([]int{p})
	}
	return out
}

// parallel calls fn(0..n-1), scaleConcurrency at a time.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, scaleConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}
