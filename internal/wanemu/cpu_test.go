package wanemu

import (
	"context"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestForwarderCPU pushes a TCP stream through a 200 Mbit/s link for 5 s and
// logs the CPU time this process spent meanwhile. The sender and receiver are
// separate processes, so the figure is the forwarder's: its own code plus the
// kernel work done inside its TUN reads and writes (which includes the
// receiving side's TCP processing, run in the writer's system call). It
// reports, it does not assert: the number depends on the machine and on -race.
func TestForwarderCPU(t *testing.T) {
	const (
		rate = 200e6
		run  = 5 * time.Second
	)
	l := newTestLink(t, Profile{RTT: 20 * time.Millisecond, RateBitsPerSec: rate}, 0)
	ctx, cancel := context.WithTimeout(t.Context(), run+10*time.Second)
	defer cancel()
	addr := netip.AddrPortFrom(addrA.Addr(), 5201).String()

	sink, sinkOut, sinkWait := startHelper(t, ctx, l.cfg.A.Namespace, "sink", addr, run)
	defer sink.Kill()
	if line, err := sinkOut.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("sink did not start: %q, %v", line, err)
	}

	var ru0, ru1 unix.Rusage
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	st0 := l.Stats()
	start := time.Now()
	source, _, sourceWait := startHelper(t, ctx, l.cfg.B.Namespace, "source", addr, run)
	defer source.Kill()
	if err := sourceWait(); err != nil {
		t.Fatalf("source: %v", err)
	}
	bytes, secs, err := parseSink(sinkOut)
	if err != nil {
		t.Fatal(err)
	}
	if err := sinkWait(); err != nil {
		t.Fatalf("sink: %v", err)
	}
	wall := time.Since(start)
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	runtime.ReadMemStats(&ms1)
	st1 := l.Stats()

	user := time.Duration(unix.TimevalToNsec(ru1.Utime) - unix.TimevalToNsec(ru0.Utime))
	sys := time.Duration(unix.TimevalToNsec(ru1.Stime) - unix.TimevalToNsec(ru0.Stime))
	pkts := st1.AToB.Packets + st1.BToA.Packets - st0.AToB.Packets - st0.BToA.Packets
	t.Logf("200 Mbit/s link, 20 ms RTT: %.1f Mbit/s TCP goodput over %.2f s", float64(bytes)*8/secs/1e6, secs)
	t.Logf("forwarder CPU over %v: user %v + sys %v = %.0f%% of one core; %d packets (%.0f/s), %.2f µs CPU and %.3f mallocs per packet (race detector: %v)",
		wall.Round(time.Millisecond), user.Round(time.Millisecond), sys.Round(time.Millisecond),
		100*(user+sys).Seconds()/wall.Seconds(), pkts, float64(pkts)/wall.Seconds(),
		float64((user+sys).Microseconds())/float64(pkts), float64(ms1.Mallocs-ms0.Mallocs)/float64(pkts), raceEnabled)
	t.Logf("stats %+v", st1)
}
