package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-tunnel/burrow/internal/wanemu"
)

// Scenario 8: the UI while someone watches. A home uplink (the agent's side
// sends) carries one, then two video downloads, and a visitor's small
// requests, each on a fresh public connection, time what the site feels like
// meanwhile. Then, on the lossy profile, how soon the default transport
// leaves QUIC for TCP and what the video gets in its first 30 s.

// homeUplink is a typical home line seen from the relay: 40 ms away,
// 50 Mbit/s up, behind a router that queues 400 packets (96 ms at that rate).
var homeUplink = wanProfile{name: "uplink", rtt: 40 * time.Millisecond, rateBits: 50e6, queuePackets: 400}

// uplinkRow is one path under one load.
type uplinkRow struct {
	key, name string
	cc        string // the namespaces' default congestion control ("" for QUIC)
	videos    int    // downloads running while the requests were timed
	lat       []time.Duration
	shares    []float64 // each video's share of the link rate, 0-1
	drops     string
	notes     []string
}

// lossyRow is the default transport over the lossy profile.
type lossyRow struct {
	profile  wanProfile
	switched time.Duration // 0: not within the limit
	share    float64       // of the link, over the first uplinkLossyWindow
	runs     int
	notes    []string
}

// uplinkLossyWindow is the span of the lossy measurement's link share.
const uplinkLossyWindow = 30 * time.Second

// uplinkSegment caps each request of the lossy measurement: a player asks
// for its video in Range requests, and a new one goes to whichever session
// the agent serves on by then.
const uplinkSegment = 5 * time.Second

// uplink is scenario 8.
func (b *bench) uplink(ctx context.Context) {
	// The link is forwarded by this process, and the relay, agent and
	// origin it starts are the path: on a machine shared with other work,
	// their wake-ups come late and a round trip grows by tens of
	// milliseconds that no real line has. Children inherit the priority.
	if err := wanemu.SetProcessNice(uplinkNice); err != nil {
		b.rep.scenarioNote(8, "priority not raised (%v): other processes' load shows in the figures", err)
	} else {
		b.rep.scenarioNote(8, "the bench, its link, relay, agent and origin ran at nice %d", uplinkNice)
	}
	bbr := haveBBR(ctx)
	b.logf("scenario 8: %s", homeUplink)
	l0 := readLoad()
	b.uplinkProfile(ctx, homeUplink, bbr)
	b.noteLoad(8, homeUplink.String(), l0)
	if b.plan.uplinkLossy && bbr && ctx.Err() == nil {
		b.logf("scenario 8: %s, transport auto", wan80)
		l0 := readLoad()
		b.uplinkLossy(ctx, wan80)
		b.noteLoad(8, wan80.String(), l0)
	}
}

// newLink creates the emulated link of prof between two fresh namespaces.
func (b *bench) newLink(ctx context.Context, prof wanProfile) (link *wanemu.Link, nsA, nsB string, err error) {
	nsA = fmt.Sprintf("burrow-bench-%d-a", os.Getpid())
	nsB = fmt.Sprintf("burrow-bench-%d-b", os.Getpid())
	link, err = wanemu.New(ctx, wanemu.Config{
		A:       wanemu.Side{Namespace: nsA, Addr: netip.MustParsePrefix(wanAddrA + "/24")},
		B:       wanemu.Side{Namespace: nsB, Addr: netip.MustParsePrefix(wanAddrB + "/24")},
		Profile: prof.wanemu(),
	})
	return link, nsA, nsB, err
}

// uplinkLink makes scenario 8's link for prof; on failure it notes why in
// the report and ok is false.
func (b *bench) uplinkLink(ctx context.Context, prof wanProfile) (link *wanemu.Link, nsA, nsB string, ok bool) {
	link, nsA, nsB, err := b.newLink(ctx, prof)
	if err != nil {
		b.rep.scenarioNote(8, "%s: link not created: %v", prof, err)
		b.rep.otherFailures = append(b.rep.otherFailures, "wanemu: "+err.Error())
		return nil, "", "", false
	}
	return link, nsA, nsB, true
}

func (b *bench) uplinkProfile(ctx context.Context, prof wanProfile, bbr bool) {
	link, nsA, nsB, ok := b.uplinkLink(ctx, prof)
	if !ok {
		return
	}
	defer link.Close()

	type pass struct{ cc, key string }
	var passes []pass
	if b.plan.uplinkDirect {
		cc := "cubic"
		if bbr {
			cc = "bbr"
		}
		passes = append(passes, pass{cc, "direct"})
	}
	for _, tr := range b.plan.uplinkPaths {
		passes = append(passes, pass{"cubic", tr})
	}
	var org *origin
	defer func() { org.stop() }()
	curCC := ""
	for _, p := range passes {
		if ctx.Err() != nil {
			return
		}
		if p.cc != curCC {
			org.stop()
			org = nil
			if err := b.setCC(ctx, p.cc, nsA, nsB); err != nil {
				b.rep.scenarioNote(8, "congestion control %s: %v", p.cc, err)
				continue
			}
			curCC = p.cc
			// Accepted connections take the listener's congestion control.
			var err error
			if org, err = b.startOrigin("uplink-"+p.cc+"-origin", nsB, wanOriginPort); err != nil {
				b.rep.otherFailures = append(b.rep.otherFailures, fmt.Sprintf("uplink origin: %v", err))
				return
			}
		}
		if p.key == "direct" {
			t := &target{key: "direct", name: "direct", addr: net.JoinHostPort(wanAddrB, strconv.Itoa(wanOriginPort)),
				host: filesHost, dial: nsDial(nsA)}
			if err := waitReady(ctx, t, 15*time.Second); err != nil {
				b.rep.otherFailures = append(b.rep.otherFailures, fmt.Sprintf("uplink origin: %v", err))
				return
			}
			b.uplinkMeasure(ctx, link, prof, p.cc, t)
			continue
		}
		pair, t, err := b.wanPair(ctx, fmt.Sprintf("uplink-%s", p.key), p.key, nsA, nsB)
		if err != nil {
			b.fail(t, 8, fmt.Errorf("%s: start: %w", prof, err))
			continue
		}
		b.uplinkMeasure(ctx, link, prof, p.cc, t)
		if l := readFile(pair.agentLog); strings.Contains(l, "moving to TCP") {
			b.rep.uplink[len(b.rep.uplink)-1].notes = append(b.rep.uplink[len(b.rep.uplink)-1].notes, "the agent left QUIC for TCP")
		}
		pair.stop()
	}
}

// wanPair runs a relay in nsA and an agent in nsB with transport tr, and
// waits until it serves.
func (b *bench) wanPair(ctx context.Context, name, tr, nsA, nsB string) (*burrowPair, *target, error) {
	tunnel := net.JoinHostPort(wanAddrA, strconv.Itoa(wanTunnelPort))
	t := &target{key: tr, name: "Burrow " + transportName(tr), addr: wanPublic, host: filesHost, burrow: true, dial: nsDial(nsA)}
	pair, err := b.startBurrow(ctx, pairSpec{
		name: name, transport: tr,
		relayNS: nsA, agentNS: nsB,
		tunnelListen: tunnel, relayAddr: tunnel, publicHTTP: wanPublic,
		services: [][2]string{{filesHost, "http://127.0.0.1:" + strconv.Itoa(wanOriginPort)}},
	})
	if err != nil {
		return nil, t, err
	}
	t.pids, t.alive, t.logs = pair.pids, pair.alive, pair.events
	if err := waitReady(ctx, t, 30*time.Second); err != nil {
		pair.stop()
		return nil, t, err
	}
	return pair, t, nil
}

// uplinkMeasure times small requests on fresh connections through t while
// 0, 1 and 2 videos download, and records each video's share of the link.
func (b *bench) uplinkMeasure(ctx context.Context, link *wanemu.Link, prof wanProfile, cc string, t *target) {
	if t.key == "quic" || t.key == "auto" {
		cc = ""
	}
	for videos := 0; videos <= 2 && ctx.Err() == nil; videos++ {
		row := &uplinkRow{key: t.key, name: t.name, cc: cc, videos: videos}
		b.rep.uplink = append(b.rep.uplink, row)
		before := link.Stats()
		if err := b.uplinkLoad(ctx, prof, t, row); err != nil {
			b.fail(t, 8, fmt.Errorf("%s, %d video(s): %w", prof, videos, err))
			row.notes = append(row.notes, "failed")
		}
		row.drops = dropsBetween(before, link.Stats())
		shares := make([]string, len(row.shares))
		for i, s := range row.shares {
			shares[i] = fmt.Sprintf("%.0f%%", s*100)
		}
		b.logf("  scenario 8 %-22s %d video(s): p50 %.0f ms, p99 %.0f ms, link %s", t.name, videos,
			percentile(row.lat, 50), percentile(row.lat, 99), strings.Join(shares, " + "))
	}
}

// uplinkLoad runs row.videos downloads of the WAN file, over and over, and
// times plan.uplinkSamples small requests once they are under way.
func (b *bench) uplinkLoad(ctx context.Context, prof wanProfile, t *target, row *uplinkRow) error {
	vctx, stop := context.WithCancel(ctx)
	defer stop()
	moved := make([]atomic.Int64, row.videos)
	errs := make(chan error, row.videos)
	var wg sync.WaitGroup
	for i := range row.videos {
		wg.Go(func() {
			c := t.client(1, true)
			defer c.CloseIdleConnections()
			for vctx.Err() == nil {
				if _, err := download(vctx, c, t, wanFile, fetch{progress: &moved[i]}); err != nil && vctx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}
	defer wg.Wait()
	if row.videos > 0 {
		// The videos fill the link and the tunnel settles on its rate.
		select {
		case <-time.After(b.plan.uplinkSettle):
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return fmt.Errorf("video: %w", err)
		}
	}
	at := make([]int64, row.videos)
	for i := range at {
		at[i] = moved[i].Load()
	}
	start := time.Now()
	c := t.client(1, false) // a new connection for every request
	defer c.CloseIdleConnections()
	for range b.plan.uplinkSamples {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		d, err := getSmall(rctx, c, t)
		cancel()
		if err != nil {
			return err
		}
		row.lat = append(row.lat, d)
		select {
		case err := <-errs:
			return fmt.Errorf("video: %w", err)
		case <-time.After(uplinkGap):
		}
	}
	elapsed := time.Since(start)
	for i := range at {
		bits := float64(moved[i].Load()-at[i]) * 8
		row.shares = append(row.shares, bits/elapsed.Seconds()/float64(prof.rateBits))
	}
	stop()
	return nil
}

// uplinkGap spaces the small requests as a browser's would be, rather than
// back to back.
const uplinkGap = 50 * time.Millisecond

// uplinkLossy measures the default transport over prof: how long until the
// agent is on TCP, counted from the first byte asked for, and the share of
// the link a player got in the first uplinkLossyWindow (its requests each
// capped at uplinkSegment, as a player's Range requests).
func (b *bench) uplinkLossy(ctx context.Context, prof wanProfile) {
	row := &lossyRow{profile: prof}
	b.rep.uplinkLossy = append(b.rep.uplinkLossy, row)
	link, nsA, nsB, ok := b.uplinkLink(ctx, prof)
	if !ok {
		return
	}
	defer link.Close()
	if err := b.setCC(ctx, "cubic", nsA, nsB); err != nil {
		b.rep.scenarioNote(8, "%s: %v", prof, err)
		return
	}
	org, err := b.startOrigin("uplink-lossy-origin", nsB, wanOriginPort)
	if err != nil {
		b.rep.otherFailures = append(b.rep.otherFailures, fmt.Sprintf("uplink origin: %v", err))
		return
	}
	defer org.stop()
	pair, t, err := b.wanPair(ctx, "uplink-lossy-auto", "auto", nsA, nsB)
	if err != nil {
		b.fail(t, 8, fmt.Errorf("%s: start: %w", prof, err))
		return
	}
	defer pair.stop()
	row.runs = 1
	onTCP := func() bool {
		l := readFile(pair.agentLog)
		i := strings.Index(l, "moving to TCP")
		return i >= 0 && strings.Contains(l[i:], "transport=tcp")
	}
	start := time.Now()
	var switched atomic.Int64 // since start; 0 while on QUIC
	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for !onTCP() {
			select {
			case <-wctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		switched.Store(int64(time.Since(start)))
	})
	var total atomic.Int64
	for ctx.Err() == nil {
		since := time.Since(start)
		if since >= uplinkLossyLimit || (since >= uplinkLossyWindow && switched.Load() > 0) {
			break
		}
		limit, counted := uplinkSegment, &total
		if left := uplinkLossyWindow - since; left <= 0 {
			counted = nil // only the switch is still being timed
		} else {
			limit = min(left, uplinkSegment)
		}
		c := t.client(1, true)
		// The switch may cut a request short; its bytes count all the same.
		_, _ = download(ctx, c, t, wanFile, fetch{limit: limit, progress: counted})
		c.CloseIdleConnections()
	}
	stopWatch()
	wg.Wait()
	row.switched = time.Duration(switched.Load())
	row.share = float64(total.Load()) * 8 / uplinkLossyWindow.Seconds() / float64(prof.rateBits)
	if row.switched == 0 {
		row.notes = append(row.notes, fmt.Sprintf("still on QUIC after %v", uplinkLossyLimit))
	}
	b.logf("  scenario 8 %s auto: on TCP after %.1f s, first %v: %.0f%% of the link", prof.name, row.switched.Seconds(), uplinkLossyWindow, row.share*100)
}

// uplinkNice is the scheduling priority of scenario 8's processes.
const uplinkNice = -10

// uplinkLossyLimit bounds the wait for the switch.
const uplinkLossyLimit = 90 * time.Second

// haveBBR reports whether the kernel offers BBR, loading its module if needed.
func haveBBR(ctx context.Context) bool {
	const avail = "/proc/sys/net/ipv4/tcp_available_congestion_control"
	if strings.Contains(readFile(avail), "bbr") {
		return true
	}
	if _, err := exec.LookPath("modprobe"); err == nil {
		_ = exec.CommandContext(ctx, "modprobe", "tcp_bbr").Run()
	}
	return strings.Contains(readFile(avail), "bbr")
}
