package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// soakClients is how many keep-alive clients load each path in scenario 9.
const soakClients = 20

// soakSeek is how long a seek reads before its client abandons it.
const soakSeek = 2 * time.Second

// soakSample is one reading of a path's processes during the soak.
type soakSample struct {
	at         time.Duration // since the load began
	relayRSS   int64
	agentRSS   int64
	fds        int
	goroutines int // -1 when the relay's admin listener did not answer
}

// soakResult is what scenario 9 measured for one transport.
type soakResult struct {
	key      string
	duration time.Duration
	window   time.Duration // the length of the "first" and "last" windows
	samples  []soakSample
	after    soakSample // a reading once the load has been gone a while
	ops      [4]int64   // done per kind: 1 MiB, large file, seek, websocket
	errors   int64
	errText  string
}

// soakOps names the kinds of request in the order of soakResult.ops.
var soakOps = [4]string{"1 MiB downloads", "large downloads", "seeks", "websockets"}

// scenarioSoak is scenario 9: soakClients keep-alive clients mix whole
// downloads, abandoned seeks and WebSocket churn for plan.soakDuration
// against fresh QUIC and TCP+yamux paths at the same time, while the
// relay's memory, descriptors and goroutines are read every second.
func (b *bench) scenarioSoak(ctx context.Context, targets []*target) {
	var paths []*target
	for _, t := range targets {
		if (t.key == "quic" || t.key == "tcp") && t.restart != nil && t.admin != nil {
			paths = append(paths, t)
		}
	}
	for _, t := range paths {
		if err := t.restart(); err != nil {
			b.fail(t, 9, fmt.Errorf("restart before the soak: %w", err))
			return
		}
	}
	var wg sync.WaitGroup
	results := make([]*soakResult, len(paths))
	for i, t := range paths {
		wg.Go(func() { results[i] = b.soak(ctx, t) })
	}
	wg.Wait()
	for i, res := range results {
		b.rep.soak = append(b.rep.soak, res)
		if err := paths[i].check(); err != nil {
			b.fail(paths[i], 9, err)
		} else if res.errors*100 > sumOps(res) {
			b.fail(paths[i], 9, fmt.Errorf("%d errors in %d requests, first: %s", res.errors, sumOps(res), res.errText))
		}
	}
	b.rep.scenarioNote(9, "both transports loaded at the same time, each by its own %d clients; samples every second", soakClients)
}

func sumOps(r *soakResult) int64 {
	var n int64
	for _, v := range r.ops {
		n += v
	}
	return n
}

// soak loads t for plan.soakDuration and samples it.
func (b *bench) soak(ctx context.Context, t *target) *soakResult {
	d := b.plan.soakDuration
	res := &soakResult{key: t.key, duration: d, window: min(time.Minute, d/4)}
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var errs errFirst
	var ops [4]atomic.Int64
	var wg sync.WaitGroup
	for range soakClients {
		wg.Go(func() { b.soakClient(lctx, t, &ops, &errs) })
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	for lctx.Err() == nil {
		select {
		case <-tick.C:
			res.samples = append(res.samples, sampleSoak(t, time.Since(start)))
		case <-lctx.Done():
		}
	}
	tick.Stop()
	wg.Wait()
	select {
	case <-time.After(b.plan.soakAfter):
	case <-ctx.Done():
	}
	res.after = sampleSoak(t, time.Since(start))
	for i := range ops {
		res.ops[i] = ops[i].Load()
	}
	errs.mu.Lock()
	res.errors = int64(errs.n)
	res.errText = strings.Join(errs.msgs, "; ")
	errs.mu.Unlock()
	b.logf("  soak %s: %d requests, %d errors", t.name, sumOps(res), res.errors)
	return res
}

// soakClient is one keep-alive client of the soak, until ctx ends.
func (b *bench) soakClient(ctx context.Context, t *target, ops *[4]atomic.Int64, errs *errFirst) {
	c := t.client(1, true)
	defer c.CloseIdleConnections()
	for ctx.Err() == nil {
		var err error
		k := 0
		switch r := rand.IntN(100); {
		case r < 40:
			_, err = download(ctx, c, t, mediumFile, fetch{want: mib})
		case r < 50:
			k = 1
			_, err = download(ctx, c, t, bigFile, fetch{want: b.plan.bigSize})
		case r < 75:
			k = 2
			err = soakSeekOnce(ctx, c, t, rand.Int64N(b.plan.bigSize-mib))
		default:
			k = 3
			err = soakWebSocket(ctx, c, t)
		}
		if ctx.Err() != nil {
			return // the soak's end cut this request short
		}
		ops[k].Add(1)
		if err != nil {
			errs.add(fmt.Errorf("%s: %w", soakOps[k], err))
		}
	}
}

// soakSeekOnce asks for the big file from offset on, reads it at a video's
// rate for soakSeek, then closes the body, as a player leaves a seek.
func soakSeekOnce(ctx context.Context, c *http.Client, t *target, from int64) error {
	ctx, cancel := context.WithTimeout(ctx, soakSeek)
	defer cancel()
	req := t.request(ctx, bigFile)
	req.Header.Set("Range", openRange(from))
	resp, err := c.Do(req)
	if err != nil {
		return ignoreCap(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("seek: %s", resp.Status)
	}
	buf := make([]byte, readSize)
	start := time.Now()
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err == io.EOF {
			return nil // a seek near the end reads the rest of the file
		}
		if err != nil {
			return ignoreCap(ctx, err)
		}
		due := time.Duration(float64(n) / viewerRate * float64(time.Second))
		if wait := due - time.Since(start); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// ignoreCap drops the error a seek ends with when its own time is up.
func ignoreCap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// soakWebSocket opens a websocket to the echo route, echoes a few
// messages and closes it.
func soakWebSocket(ctx context.Context, c *http.Client, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+t.addr+"/", &websocket.DialOptions{HTTPClient: c, Host: wsHost})
	if err != nil {
		return fmt.Errorf("websocket open: %w", err)
	}
	defer ws.CloseNow()
	msg := []byte("burrow soak")
	for range 3 {
		if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
			return fmt.Errorf("websocket write: %w", err)
		}
		if _, got, err := ws.Read(ctx); err != nil || string(got) != string(msg) {
			return fmt.Errorf("websocket echo: %q, %v", got, err)
		}
	}
	return ws.Close(websocket.StatusNormalClosure, "")
}

// sampleSoak reads the relay's and agent's RSS, the relay's open
// descriptors and its goroutines.
func sampleSoak(t *target, at time.Duration) soakSample {
	s := soakSample{at: at, goroutines: -1}
	pids := t.procs()
	if len(pids) < 2 {
		return s
	}
	s.relayRSS = rssBytes(pids[:1])
	s.agentRSS = rssBytes(pids[1:])
	if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pids[0]) + "/fd"); err == nil {
		s.fds = len(ents)
	}
	if addr := t.admin(); addr != "" {
		s.goroutines = goroutines(addr)
	}
	return s
}

var metricsClient = &http.Client{Timeout: 2 * time.Second}

// goroutines reads go_goroutines from the admin listener at addr, -1 when
// it does not answer.
func goroutines(addr string) int {
	resp, err := metricsClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4*mib))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return int(f)
			}
		}
	}
	return -1
}

// soakMeans is the mean of the samples in [from, to).
type soakMeans struct {
	rss, fds, goroutines float64
	n                    int
}

func (r *soakResult) mean(from, to time.Duration) soakMeans {
	var m soakMeans
	ng := 0
	for _, s := range r.samples {
		if s.at < from || s.at >= to {
			continue
		}
		m.n++
		m.rss += float64(s.relayRSS)
		m.fds += float64(s.fds)
		if s.goroutines >= 0 {
			m.goroutines += float64(s.goroutines)
			ng++
		}
	}
	if m.n > 0 {
		m.rss /= float64(m.n)
		m.fds /= float64(m.n)
	}
	if ng > 0 {
		m.goroutines /= float64(ng)
	} else {
		m.goroutines = -1
	}
	return m
}

func (r *soakResult) first() soakMeans { return r.mean(0, r.window) }
func (r *soakResult) last() soakMeans  { return r.mean(r.duration-r.window, r.duration+time.Second) }

// peak is the highest relay and agent RSS sampled.
func (r *soakResult) peak() (relay, agent int64) {
	for _, s := range r.samples {
		relay, agent = max(relay, s.relayRSS), max(agent, s.agentRSS)
	}
	return relay, agent
}

// Tolerances of "no growth": the last window's mean may exceed the first's
// by the larger of a share and an absolute amount.
const (
	soakRSSShare   = 0.10
	soakRSSAbs     = 8 * mib
	soakCountShare = 0.05
	soakCountAbs   = 5
)

// grew reports whether last exceeds first beyond the tolerance.
func grew(first, last, share, abs float64) bool {
	return last-first > max(first*share, abs)
}

// growth lists what grew from the first window to the last; empty when
// nothing did.
func (r *soakResult) growth() []string {
	f, l := r.first(), r.last()
	var out []string
	if f.n == 0 || l.n == 0 {
		return []string{"too few samples"}
	}
	if grew(f.rss, l.rss, soakRSSShare, soakRSSAbs) {
		out = append(out, fmt.Sprintf("RSS +%.1f MiB", (l.rss-f.rss)/mib))
	}
	if grew(f.fds, l.fds, soakCountShare, soakCountAbs) {
		out = append(out, fmt.Sprintf("fds +%.0f", l.fds-f.fds))
	}
	switch {
	case f.goroutines < 0 || l.goroutines < 0:
		out = append(out, "goroutines not read")
	case grew(f.goroutines, l.goroutines, soakCountShare, soakCountAbs):
		out = append(out, fmt.Sprintf("goroutines +%.0f", l.goroutines-f.goroutines))
	}
	return out
}
