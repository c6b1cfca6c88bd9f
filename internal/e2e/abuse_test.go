package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Visitors that ask for a video and never read it are the cheapest attack on
// a relay. A thousand of them from one address must cost the relay a bounded
// amount of memory and the home uplink a bounded amount of data, leave the
// site working for everyone else, and be cut after limits.stalled_client.
func TestStalledVisitorsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand connections and a wait for their timeout")
	}
	const (
		stalled      = 1000
		stallTimeout = 10 * time.Second
		maxGrowth    = 256 << 20 // relay RSS over its baseline
		maxSent      = 64 << 20  // what the agent pulled from the service
	)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			e := newEnvWith(t, tr, fmt.Sprintf("limits:\n  stalled_client: %s\n", stallTimeout))
			pid := e.relay.cmd.Process.Pid
			base, fds0 := rssOf(t, pid), fdCount(t, pid)
			heap0 := value(scrape(t, e.relayAdmin), "go_memstats_heap_inuse_bytes", nil)
			sent0 := e.tunnelReceived()

			// A neighbour from 127.0.0.2: first on an idle relay.
			neighbour := clientFrom("127.0.0.2", e.publicAddr())
			defer neighbour.CloseIdleConnections()
			small := e.url("/files/small.bin")
			// As long as the attack is measured, so that both p99s rest on as
			// many requests.
			idle := e.useSite(neighbour, small, time.Now().Add(stallTimeout-time.Second), pid)
			if idle.failures > 0 {
				t.Fatalf("%d of %d requests failed on an idle relay", idle.failures, idle.asked)
			}

			// The attack: raw HTTP/1.1 requests for the large file from
			// 127.0.0.1, never read.
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			req := "GET /files/large.bin HTTP/1.1\r\nHost: " + publicHost + "\r\n\r\n"
			// What the agent sends is measured over the stall timeout from the
			// first attack: the analog of the default's first minute. (An
			// attacker that comes back after the cut pays again, as with nginx.)
			window := time.Now().Add(stallTimeout - time.Second)
			sentIn := e.sentUntil(window, sent0)
			for range stalled {
				c, err := d.Dial("tcp", e.publicAddr())
				if err != nil {
					t.Fatalf("attack connection %d: %v", len(conns), err)
				}
				conns = append(conns, c)
				if _, err := c.Write([]byte(req)); err != nil {
					t.Fatal(err)
				}
			}

			attacked := time.Now()

			// Meanwhile, a neighbour from 127.0.0.2 uses the site.
			t.Logf("%d attack connections made in %v", stalled, time.Since(window.Add(time.Second-stallTimeout)).Round(time.Millisecond))
			use := e.useSite(neighbour, small, window, pid)
			peak := use.peakRSS
			sent := <-sentIn
			t.Logf("%s: relay RSS %d MiB at rest, peak %d MiB with %d stalled visitors; the agent sent %d MiB up the tunnel within the stall timeout",
				tr, base>>20, peak>>20, stalled, sent>>20)
			use.check(t, idle)
			if peak-base > maxGrowth {
				t.Errorf("relay RSS grew by %d MiB, want at most %d MiB", (peak-base)>>20, maxGrowth>>20)
			}
			if sent > maxSent {
				t.Errorf("the agent sent %d MiB for visitors that read nothing, want at most %d MiB", sent>>20, maxSent>>20)
			}

			// After the timeout the relay has cut them all: each connection
			// ends (EOF or reset) once what the kernel holds is read.
			// A request that waited for a slot (up to 5 s) may have got one
			// as the first were cut: it is cut a stall timeout later.
			time.Sleep(time.Until(attacked.Add(5*time.Second + stallTimeout + 2*time.Second)))
			var open atomic.Int64
			var wg sync.WaitGroup
			deadline := time.Now().Add(3 * time.Second)
			for _, c := range conns {
				wg.Go(func() {
					if !endsBy(c, deadline) {
						open.Add(1)
					}
				})
			}
			wg.Wait()
			if n := open.Load(); n > 0 {
				t.Errorf("%d of %d stalled visitors still connected %v after the attack", n, stalled, time.Since(attacked).Round(time.Second))
			}
			if fds := fdCount(t, pid); fds > fds0+8 {
				t.Errorf("relay holds %d file descriptors after the attack, %d before it", fds, fds0)
			}
			e.heapReturns(heap0)
		})
	}
}

// relayHeap is the relay's Go heap in use, from its admin metrics.
func (e *env) relayHeap() float64 {
	e.t.Helper()
	return value(scrape(e.t, e.relayAdmin), "go_memstats_heap_inuse_bytes", nil)
}

// heapReturns checks that the relay's memory comes back after an attack:
// its Go heap in use returns to heap0, its level before the attack, within
// 10 s (RSS follows as the runtime returns pages to the kernel, over
// minutes).
func (e *env) heapReturns(heap0 float64) {
	t := e.t
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A heap profile with gc=1 runs a collection first: the heap
		// then holds only what is still referenced.
		if resp, err := http.Get("http://" + e.relayAdmin + "/debug/pprof/heap?gc=1"); err == nil {
			resp.Body.Close()
		}
		heap := e.relayHeap()
		if heap <= heap0+16<<20 {
			t.Logf("relay heap in use: %.0f MiB before the attack, %.0f MiB after", heap0/(1<<20), heap/(1<<20))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("relay heap in use %.0f MiB after the attack, %.0f MiB before it", heap/(1<<20), heap0/(1<<20))
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// sentUntil yields what the agent sent up the tunnel from now until until,
// over the sent0 it had sent before.
func (e *env) sentUntil(until time.Time, sent0 int64) <-chan int64 {
	sentIn := make(chan int64, 1)
	go func() {
		var last int64
		for time.Now().Before(until) {
			last = e.tunnelReceived() - sent0
			time.Sleep(100 * time.Millisecond)
		}
		sentIn <- last
	}()
	return sentIn
}

// siteUse is how a visitor's requests fared.
type siteUse struct {
	took            []time.Duration // of the requests that succeeded
	asked, failures int
	peakRSS         int64 // the relay's, sampled after each request
}

// useSite requests url with c at least 20 times and until until, one every
// siteUsePause, as a visitor browsing the site, and samples the RSS of the
// relay (process pid) meanwhile.
func (e *env) useSite(c *http.Client, url string, until time.Time, pid int) siteUse {
	t := e.t
	t.Helper()
	var u siteUse
	for i := 0; i < 20 || time.Now().Before(until); i++ {
		u.asked++
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		start := time.Now()
		status, err := getStatus(ctx, c, url)
		took := time.Since(start)
		cancel()
		if err != nil || status != http.StatusOK {
			u.failures++
			t.Logf("request %d from another address: %d %v", i, status, err)
		} else {
			u.took = append(u.took, took)
		}
		u.peakRSS = max(u.peakRSS, rssOf(t, pid))
		time.Sleep(siteUsePause)
	}
	return u
}

// siteUsePause is the pause between a neighbour's requests: about 400 over
// a stall timeout, so that a p99 is not the second-slowest of 170 requests,
// where the one request sent while the relay takes in a thousand attack
// requests (20–40 ms) and one scheduler hiccup of the kind idle runs also
// show (7–13 ms, once in 170 requests in about a third of the runs) decided it.
const siteUsePause = 20 * time.Millisecond

// check logs u, requests made during an attack, beside idle, made on an
// idle relay, and fails t unless every request of u succeeded with a median
// and a p99 of at most 3× idle's.
func (u siteUse) check(t *testing.T, idle siteUse) {
	t.Helper()
	t.Logf("requests from another address: idle p50 %v p99 %v (%d); attacked p50 %v p99 %v (%d)",
		idle.percentile(50), idle.percentile(99), idle.asked, u.percentile(50), u.percentile(99), u.asked)
	if u.failures > 0 {
		t.Errorf("%d of %d requests from another address failed during the attack", u.failures, u.asked)
	}
	for _, p := range []int{50, 99} {
		if got, limit := u.percentile(p), 3*idle.percentile(p); got > limit {
			t.Errorf("requests from another address took %v (p%d) during the attack, want at most %v (3× idle)", got, p, limit)
		}
	}
}

// percentile is the p-th percentile of the successful requests' times.
func (u siteUse) percentile(p int) time.Duration {
	if len(u.took) == 0 {
		return 0
	}
	d := slices.Clone(u.took)
	slices.Sort(d)
	return d[min(len(d)-1, (len(d)*p+99)/100-1)].Round(10 * time.Microsecond)
}

// tunnelReceived is what the relay received from agents on their live
// sessions, from its admin listener's status.
func (e *env) tunnelReceived() int64 {
	e.t.Helper()
	var st struct {
		Detail struct {
			Sessions []struct {
				BytesReceived int64 `json:"bytes_received"`
			} `json:"sessions"`
		} `json:"detail"`
	}
	getJSON(e.t, "http://"+e.relayAdmin+"/status.json", &st)
	var n int64
	for _, s := range st.Detail.Sessions {
		n += s.BytesReceived
	}
	return n
}

// clientFrom is a client whose connections come from ip and go to addr.
func clientFrom(ip, addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
}

func getStatus(ctx context.Context, c *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, err = bufio.NewReader(res.Body).WriteTo(discard{})
	return res.StatusCode, err
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// endsBy reads c until it ends, until deadline at most: true when it ended.
func endsBy(c net.Conn, deadline time.Time) bool {
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 32<<10)
	for {
		if _, err := c.Read(buf); err != nil {
			return !errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
}

// rssOf is the resident set of process pid, in bytes.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// fdCount is how many file descriptors process pid holds.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
