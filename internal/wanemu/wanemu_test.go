package wanemu

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	good := Config{
		A: Side{Namespace: "bw-relay", Addr: addrA},
		B: Side{Namespace: "bw-agent", Addr: addrB},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		key  string
		edit func(*Config)
	}{
		{"A.Namespace", func(c *Config) { c.A.Namespace = "../etc" }},
		{"B.Namespace", func(c *Config) { c.B.Namespace = "" }},
		{"both", func(c *Config) { c.B.Namespace = c.A.Namespace }},
		{"A.Addr", func(c *Config) { c.A.Addr = netip.MustParsePrefix("127.0.0.1/8") }},
		{"B.Addr", func(c *Config) { c.B.Addr = netip.Prefix{} }},
		{"both", func(c *Config) { c.B.Addr = c.A.Addr }},
		{"one prefix", func(c *Config) { c.B.Addr = netip.MustParsePrefix("10.234.0.2/24") }},
		{"MTU", func(c *Config) { c.MTU = 100 }},
		{"RTT", func(c *Config) { c.Profile.RTT = -time.Millisecond }},
		{"Loss", func(c *Config) { c.Profile.Loss = math.NaN() }},
		{"RateBitsPerSec", func(c *Config) { c.Profile.RateBitsPerSec = -1 }},
		{"QueueBytes", func(c *Config) { c.Profile.QueueBytes = -1 }},
	} {
		c := good
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: Validate() = %v, want an error naming %s", tc.key, err, tc.key)
		}
	}
}

// TestIsolation checks the safety property: each namespace routes only the
// link's prefix, so nothing can leave for the host or the outside world.
func TestIsolation(t *testing.T) {
	l := newTestLink(t, Profile{}, 0)
	for _, ns := range []string{l.cfg.A.Namespace, l.cfg.B.Namespace} {
		out, err := Command(t.Context(), ns, "ip", "-o", "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ip route: %v: %s", ns, err, out)
		}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			switch {
			case f[0] == "10.233.0.0/24" && field(f, "dev") == "wan0":
			case field(f, "table") == "local" || field(f, "dev") == "lo":
				// The kernel's own addresses, and loopback.
			default:
				t.Errorf("%s: unexpected route %q", ns, strings.TrimSpace(line))
			}
		}
		out, err = Command(t.Context(), ns, "ip", "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ip link: %v: %s", ns, err, out)
		}
		if n := strings.Count(string(out), "\n"); n != 2 || !strings.Contains(string(out), "wan0") ||
			!strings.Contains(string(out), "mtu 1500") || !strings.Contains(string(out), "qlen 4096") {
			t.Errorf("%s: want exactly lo and wan0 (mtu 1500, qlen 4096), got\n%s", ns, out)
		}
	}
}

// pingUDP measures n round trips from ns B to a UDP echo in ns A.
func pingUDP(t *testing.T, l *Link, n int, gap time.Duration) []time.Duration {
	t.Helper()
	echo := listenUDP(t, l.cfg.A.Namespace, netip.AddrPortFrom(addrA.Addr(), 0))
	stop := udpEcho(echo)
	defer stop()
	c := listenUDP(t, l.cfg.B.Namespace, netip.AddrPortFrom(addrB.Addr(), 0))
	to := echo.LocalAddr().(*net.UDPAddr).AddrPort()

	var rtts []time.Duration
	buf := make([]byte, 64)
	for i := range n {
		binary.BigEndian.PutUint64(buf, uint64(i))
		start := time.Now()
		if _, err := c.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			m, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			if m == 64 && binary.BigEndian.Uint64(buf) == uint64(i) {
				break
			}
		}
		rtts = append(rtts, time.Since(start))
		time.Sleep(gap)
	}
	slices.Sort(rtts)
	return rtts
}

func TestRTT(t *testing.T) {
	l := newTestLink(t, Profile{RTT: 40 * time.Millisecond}, 0)
	for _, tc := range []struct {
		aToB, bToA time.Duration
		want       time.Duration
	}{
		{40 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond},
		{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		// Asymmetric: each direction adds half its own RTT.
		{30 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond},
	} {
		if err := l.SetProfiles(Profile{RTT: tc.aToB}, Profile{RTT: tc.bToA}); err != nil {
			t.Fatal(err)
		}
		rtts := pingUDP(t, l, 15, 20*time.Millisecond)
		lo, med, hi := rtts[0], rtts[len(rtts)/2], rtts[len(rtts)-1]
		t.Logf("RTT %v: min %v median %v max %v", tc.want, lo, med, hi)
		if lo < tc.want {
			t.Errorf("RTT %v: fastest round trip %v is below the configured RTT", tc.want, lo)
		}
		// The lower bound is exact; the upper one leaves room for a busy CI
		// machine, where the forwarder's thread waits for a core.
		if limit := 2*tc.want + 10*time.Millisecond; med > limit {
			t.Errorf("RTT %v: median %v above %v", tc.want, med, limit)
		}
	}
}

// TestInNamespaceRestores checks that the calling thread is back in its own
// namespace after fn, even when fn panics.
func TestInNamespaceRestores(t *testing.T) {
	l := newTestLink(t, Profile{}, 0)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := func() string {
		ns, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	home := self()
	var inside string
	func() {
		defer func() { recover() }()
		InNamespace(l.cfg.A.Namespace, func() error {
			inside = self()
			panic("boom")
		})
	}()
	if inside == home || inside == "" {
		t.Errorf("inside the namespace the thread was in %q, like outside", inside)
	}
	if got := self(); got != home {
		t.Errorf("after a panic in fn the thread is in %s, want %s", got, home)
	}
}

func TestThroughput(t *testing.T) {
	const rate = 100e6
	l := newTestLink(t, Profile{RTT: 20 * time.Millisecond, RateBitsPerSec: rate}, 0)
	var ln net.Listener
	err := InNamespace(l.cfg.A.Namespace, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addrA.Addr(), 0).String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	const size = 20 << 20
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var c net.Conn
	err = InNamespace(l.cfg.B.Namespace, func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	s.SetDeadline(deadline)

	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, size))
		c.Close()
		sent <- err
	}()
	n, err := io.Copy(io.Discard, s)
	elapsed := time.Since(start)
	if err := <-sent; err != nil {
		t.Fatalf("send: %v", err)
	}
	if err != nil || n != size {
		t.Fatalf("received %d of %d bytes: %v", n, size, err)
	}
	mbps := float64(n) * 8 / elapsed.Seconds() / 1e6
	t.Logf("%d MB in %v: %.1f Mbit/s goodput; stats %+v", n>>20, elapsed.Round(time.Millisecond), mbps, l.Stats())
	if mbps < 25 || mbps > 105 {
		t.Errorf("goodput %.1f Mbit/s outside [25, 105] for a 100 Mbit/s link", mbps)
	}
}

func TestLoss(t *testing.T) {
	const (
		loss = 0.10
		sent = 2000
	)
	l := newTestLink(t, Profile{Loss: loss}, 0)
	r := listenUDP(t, l.cfg.A.Namespace, netip.AddrPortFrom(addrA.Addr(), 0))
	c := listenUDP(t, l.cfg.B.Namespace, netip.AddrPortFrom(addrB.Addr(), 0))
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()

	got := make(chan int, 1)
	go func() {
		n, buf := 0, make([]byte, 2048)
		for {
			r.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
				got <- n
				return
			}
			n++
		}
	}()
	buf := make([]byte, 512)
	for i := range sent {
		if _, err := c.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			time.Sleep(2 * time.Millisecond) // keep the receive buffer from overflowing
		}
	}
	received := <-got
	st := l.Stats().BToA
	// Five standard deviations of the binomial: a false alarm is a 1 in
	// 1.7 million event.
	mean, sd := sent*loss, math.Sqrt(sent*loss*(1-loss))
	t.Logf("sent %d, received %d, link lost %d (expect %.0f ± %.1f); stats %+v", sent, received, sent-received, mean, sd, st)
	if lost := float64(sent - received); math.Abs(lost-mean) > 5*sd {
		t.Errorf("lost %.0f of %d, want %.0f ± %.0f", lost, sent, mean, 5*sd)
	}
	if st.Lost+st.Packets != sent || uint64(received) > st.Packets {
		t.Errorf("stats %+v do not account for %d sent, %d received", st, sent, received)
	}
}

func TestQueueTailDrop(t *testing.T) {
	// At 1 Mbit/s a 1028-byte IP packet (1000 bytes of payload) takes 8.2
	// ms to send, so of a burst of 100 the 20,000-byte queue takes 19 or 20,
	// plus one per 8.2 ms the burst took to arrive.
	const (
		burst  = 100
		size   = 1028
		queue  = 20000
		perPkt = 8224 * time.Microsecond
	)
	l := newTestLink(t, Profile{RateBitsPerSec: 1e6, QueueBytes: queue}, 0)
	r := listenUDP(t, l.cfg.A.Namespace, netip.AddrPortFrom(addrA.Addr(), 0))
	c := listenUDP(t, l.cfg.B.Namespace, netip.AddrPortFrom(addrB.Addr(), 0))
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, size-28)
	start := time.Now()
	for range burst {
		if _, err := c.WriteToUDPAddrPort(buf, to); err != nil {
			t.Fatal(err)
		}
	}
	sendTime := time.Since(start)
	var st DirStats
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st = l.Stats().BToA; st.Packets+st.QueueDrops >= burst {
			break
		}
	}
	minTaken, maxTaken := uint64(queue/size), uint64(queue/size+2+int(sendTime/perPkt))
	t.Logf("burst of %d sent in %v: %+v (want %d to %d delivered)", burst, sendTime, st, minTaken, maxTaken)
	if st.Packets+st.QueueDrops != burst {
		t.Errorf("stats %+v: want deliveries and tail drops to account for the burst of %d", st, burst)
	}
	if st.Packets < minTaken || st.Packets > maxTaken {
		t.Errorf("%d packets delivered, want %d to %d", st.Packets, minTaken, maxTaken)
	}
}

// TestNewCleansUp checks that a failed New removes what it created and leaves
// an existing namespace alone.
func TestNewCleansUp(t *testing.T) {
	requireLinkSupport(t)
	ctx := t.Context()
	a, b := fmt.Sprintf("bw-%d-fail-a", os.Getpid()), fmt.Sprintf("bw-%d-fail-b", os.Getpid())
	if err := ip(ctx, "netns", "add", b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip(context.Background(), "netns", "delete", b) })
	_, err := New(ctx, Config{A: Side{Namespace: a, Addr: addrA}, B: Side{Namespace: b, Addr: addrB}})
	if err == nil {
		t.Fatal("New succeeded with an existing namespace")
	}
	t.Logf("New: %v", err)
	if _, err := os.Stat(netnsDir + "/" + a); err == nil {
		t.Errorf("namespace %s left behind", a)
	}
	if _, err := os.Stat(netnsDir + "/" + b); err != nil {
		t.Errorf("existing namespace %s was removed: %v", b, err)
	}
}

// field returns the word after key in an `ip -o` line.
func field(f []string, key string) string {
	if i := slices.Index(f, key); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}
