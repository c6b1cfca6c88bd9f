package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/internal/wanemu"
)

// The emulated WAN's addresses: the relay's side A, the agent's side B.
const (
	wanAddrA      = "10.233.0.1"
	wanAddrB      = "10.233.0.2"
	wanTunnelPort = 7835
	wanPublic     = "127.0.0.1:8080" // the relay's public side, on A's loopback
	wanOriginPort = 8081             // the origin on B (all addresses)
)

const (
	ccPath      = "/proc/sys/net/ipv4/tcp_congestion_control"
	ccAllowPath = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"
)

// wan is scenario 7: one emulated link per profile, and on it a direct
// download and one through each transport.
func (b *bench) wan(ctx context.Context) {
	bbr := haveBBR(ctx)
	if !bbr {
		b.rep.wanNotes = append(b.rep.wanNotes, "TCP BBR is unavailable on this kernel (not in tcp_available_congestion_control, modprobe tcp_bbr failed): only cubic is measured.")
	}
	for _, prof := range b.plan.wanProfiles {
		if ctx.Err() != nil {
			return
		}
		b.logf("scenario 7: emulated WAN %s", prof)
		l0 := readLoad()
		b.wanProfile(ctx, prof, bbr)
		b.noteLoad(7, prof.String(), l0)
	}
}

func (b *bench) wanProfile(ctx context.Context, prof wanProfile, bbr bool) {
	link, nsA, nsB, err := b.newLink(ctx, prof)
	if err != nil {
		b.rep.wanNotes = append(b.rep.wanNotes, fmt.Sprintf("%s: link not created: %v", prof, err))
		b.rep.otherFailures = append(b.rep.otherFailures, "wanemu: "+err.Error())
		return
	}
	defer func() {
		if err := link.Close(); err != nil {
			b.rep.wanNotes = append(b.rep.wanNotes, fmt.Sprintf("%s: link close: %v", prof, err))
		}
	}()

	ccs := []string{"cubic"}
	if prof.bothCC && bbr {
		ccs = append(ccs, "bbr")
	}
	for _, cc := range ccs {
		if ctx.Err() != nil {
			return
		}
		if err := b.setCC(ctx, cc, nsA, nsB); err != nil {
			b.rep.wanNotes = append(b.rep.wanNotes, fmt.Sprintf("%s: congestion control %s: %v", prof, cc, err))
			continue
		}
		// The origin starts after the sysctl: accepted connections take the
		// listener's congestion control.
		org, err := b.startOrigin(fmt.Sprintf("wan-%s-%s-origin", prof.name, cc), nsB, wanOriginPort)
		if err != nil {
			b.rep.otherFailures = append(b.rep.otherFailures, fmt.Sprintf("WAN origin: %v", err))
			return
		}
		direct := &target{key: "direct", name: "direct", addr: net.JoinHostPort(wanAddrB, strconv.Itoa(wanOriginPort)),
			host: filesHost, dial: nsDial(nsA)}
		if err := waitReady(ctx, direct, 15*time.Second); err != nil {
			b.rep.otherFailures = append(b.rep.otherFailures, fmt.Sprintf("WAN origin: %v", err))
			org.stop()
			return
		}
		b.wanMeasure(ctx, link, prof, cc, direct)
		transports := []string{"tcp"}
		if cc == "cubic" {
			transports = []string{"quic", "tcp"}
			if prof.loss > 0 && bbr {
				// The default setting, which should find its way off QUIC.
				transports = append(transports, "auto")
			}
		}
		for _, tr := range transports {
			if ctx.Err() != nil {
				break
			}
			b.wanBurrow(ctx, link, prof, cc, tr, nsA, nsB)
		}
		org.stop()
	}
}

// wanBurrow runs a relay in A and an agent in B and measures through them.
func (b *bench) wanBurrow(ctx context.Context, link *wanemu.Link, prof wanProfile, cc, tr, nsA, nsB string) {
	tunnel := net.JoinHostPort(wanAddrA, strconv.Itoa(wanTunnelPort))
	pair, err := b.startBurrow(ctx, pairSpec{
		name: fmt.Sprintf("wan-%s-%s-%s", prof.name, cc, tr), transport: tr,
		relayNS: nsA, agentNS: nsB,
		tunnelListen: tunnel, relayAddr: tunnel, publicHTTP: wanPublic,
		services: [][2]string{{filesHost, "http://127.0.0.1:" + strconv.Itoa(wanOriginPort)}},
	})
	t := &target{key: tr, name: "Burrow " + transportName(tr), addr: wanPublic, host: filesHost, burrow: true, dial: nsDial(nsA)}
	if err == nil {
		defer pair.stop()
		t.pids, t.alive, t.logs = pair.pids, pair.alive, pair.events
		err = waitReady(ctx, t, 30*time.Second)
	}
	if err != nil {
		b.fail(t, 7, fmt.Errorf("%s: start: %w", prof, err))
		return
	}
	var switched time.Duration
	if tr == "auto" {
		if switched, err = waitSwitch(ctx, t, pair.agentLog, autoSwitchLimit); err != nil {
			b.fail(t, 7, fmt.Errorf("%s: %w", prof, err))
			return
		}
	}
	b.wanMeasure(ctx, link, prof, cc, t)
	row := b.rep.wan[len(b.rep.wan)-1]
	if tr == "auto" {
		row.notes = append(row.notes, fmt.Sprintf("moved from QUIC to TCP %.0f s into downloads of 5 s each (scenario 8 times the switch finely)", switched.Seconds()))
	}
	if tr != "quic" {
		// Burrow may choose its own algorithm per socket, whatever the
		// namespace's default; the agent sends the downloads.
		got := socketCC(ctx, nsB, tunnel)
		row.socketCC = got
		if got == "" {
			row.notes = append(row.notes, "tunnel socket's congestion control not read (ss)")
		}
	}
}

// autoSwitchLimit bounds the wait for transport auto to leave a lossy path.
const autoSwitchLimit = 2 * time.Minute

// waitSwitch downloads through t until the agent's log says it moved to TCP
// and connected over it, and returns how long that took.
func waitSwitch(ctx context.Context, t *target, agentLog string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	moved := func() bool {
		l := readFile(agentLog)
		i := strings.Index(l, "moving to TCP")
		return i >= 0 && strings.Contains(l[i:], "transport=tcp")
	}
	for !moved() {
		if time.Since(start) > limit {
			return 0, fmt.Errorf("transport auto still on QUIC after %v of downloads", limit)
		}
		c := t.client(1, true)
		_, _ = download(ctx, c, t, wanFile, fetch{limit: 5 * time.Second})
		c.CloseIdleConnections()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return time.Since(start), nil
}

// socketCC is the congestion control of the established TCP connection to
// peer in namespace ns, as ss reports it.
func socketCC(ctx context.Context, ns, peer string) string {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ss", "-tinH", "dst", peer).Output()
	if err != nil {
		return ""
	}
	known := strings.Fields(readFile("/proc/sys/net/ipv4/tcp_available_congestion_control"))
	for _, f := range strings.Fields(string(out)) {
		if slices.Contains(known, f) {
			return f
		}
	}
	return ""
}

// wanMeasure downloads the WAN file plan.runs times through t, each on a
// new connection, and times Range requests at random offsets.
func (b *bench) wanMeasure(ctx context.Context, link *wanemu.Link, prof wanProfile, cc string, t *target) {
	row := &wanRow{profile: prof, key: t.key, name: t.name, cc: cc, burrow: t.burrow}
	if t.key == "quic" {
		row.cc = ""
	}
	b.rep.wan = append(b.rep.wan, row)
	before := link.Stats()
	for run := 1; run <= b.plan.runs && ctx.Err() == nil; run++ {
		row.runs++
		c := t.client(1, true)
		start := time.Now()
		n, err := download(ctx, c, t, wanFile, fetch{want: b.plan.wanSize, limit: b.plan.wanCap})
		d := time.Since(start)
		c.CloseIdleConnections()
		if errors.Is(err, errCapped) {
			row.cappedN++
			err = nil
		}
		if err == nil && n == 0 {
			err = errors.New("no byte arrived before the cap")
		}
		if err != nil {
			b.fail(t, 7, fmt.Errorf("%s, %s, run %d: %w", prof, ccName(row.cc), run, err))
			row.notes = append(row.notes, "run "+strconv.Itoa(run)+" failed")
			continue
		}
		rate := mbps(n, d)
		row.mbps = append(row.mbps, rate)
		row.linkShare = append(row.linkShare, rate*8e6/float64(prof.rateBits))
		for range b.plan.wanSeeks {
			ttb, err := ttfb(ctx, t, wanFile, openRange(rand.Int64N(b.plan.wanSize-mib)))
			if err != nil {
				b.fail(t, 7, fmt.Errorf("%s, seek: %w", prof, err))
				break
			}
			row.seekMS = append(row.seekMS, ms(ttb))
		}
		b.logf("  scenario 7 %s %-18s %-5s run %d/%d: %.1f MB/s (%.0f%% of link)", prof.name, t.name, ccName(row.cc),
			run, b.plan.runs, rate, rate*8e6/float64(prof.rateBits)*100)
	}
	after := link.Stats()
	row.drops = dropsBetween(before, after)
}

func ccName(cc string) string {
	if cc == "" {
		return "quic"
	}
	return cc
}

// dropsBetween describes the packets the link dropped between two snapshots.
func dropsBetween(a, b wanemu.Stats) string {
	d := func(x, y wanemu.DirStats) string {
		return fmt.Sprintf("%d lost, %d queue", y.Lost-x.Lost, y.QueueDrops-x.QueueDrops)
	}
	return "B→A " + d(a.BToA, b.BToA) + "; A→B " + d(a.AToB, b.AToB)
}

// setCC sets the TCP congestion control in each namespace and checks that
// the host's setting did not change with it (the sysctl is per namespace).
func (b *bench) setCC(ctx context.Context, cc string, namespaces ...string) error {
	host := strings.TrimSpace(readFile(ccPath))
	if err := b.allowCC(cc); err != nil {
		return err
	}
	for _, ns := range namespaces {
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "sh", "-c",
			"echo "+cc+" > "+ccPath+" && cat "+ccPath).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", ns, err, strings.TrimSpace(string(out)))
		}
		if got := strings.TrimSpace(string(out)); got != cc {
			return fmt.Errorf("%s: reads back %q", ns, got)
		}
	}
	if now := strings.TrimSpace(readFile(ccPath)); now != host {
		_ = os.WriteFile(ccPath, []byte(host), 0o644)
		return fmt.Errorf("net.ipv4.tcp_congestion_control is not per namespace on this kernel (the host's changed to %s; restored to %s)", now, host)
	}
	note := "net.ipv4.tcp_congestion_control is per network namespace on this kernel: set in A and B only, the host's stays " + host + "."
	if cc != "cubic" && !slices.Contains(b.rep.wanNotes, note) {
		b.rep.wanNotes = append(b.rep.wanNotes, note)
	}
	return nil
}

// allowCC puts cc on the host's tcp_allowed_congestion_control until the
// bench ends: outside the initial namespace the kernel takes only allowed
// algorithms as the default (EPERM otherwise).
func (b *bench) allowCC(cc string) error {
	cur := strings.Fields(readFile(ccAllowPath))
	if slices.Contains(cur, cc) {
		return nil
	}
	orig := strings.Join(cur, " ")
	if err := os.WriteFile(ccAllowPath, []byte(orig+" "+cc), 0o644); err != nil {
		return fmt.Errorf("allow %s: %w", cc, err)
	}
	b.restore = append(b.restore, func() { _ = os.WriteFile(ccAllowPath, []byte(orig), 0o644) })
	b.rep.wanNotes = append(b.rep.wanNotes, fmt.Sprintf("%s was added to the host's net.ipv4.tcp_allowed_congestion_control (%q) for the run and removed after it: a namespace may only default to an allowed algorithm.", cc, orig))
	return nil
}

// nsDial dials from inside namespace ns.
func nsDial(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := wanemu.InNamespace(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
