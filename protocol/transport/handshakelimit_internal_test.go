package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func udpAddr(s string) net.Addr { return net.UDPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// 60 a minute: bursts of 6, then one a second; proven addresses may spend
// the last half of a burst, unproven ones must prove theirs first.
func TestHandshakeLimiterBurstAndRate(t *testing.T) {
	l := newHandshakeLimiter(60)
	now := time.Unix(1e9, 0)
	a := udpAddr("192.0.2.1:1000")
	var unproven int
	for l.allow(a, false, now) {
		unproven++
	}
	if unproven != 3 {
		t.Errorf("%d unproven handshakes passed in a burst, want 3", unproven)
	}
	if !l.needsProof(a, now) {
		t.Error("no proof asked once only the reserve is left")
	}
	var proven int
	for l.allow(a, true, now) {
		proven++
	}
	if proven != 3 {
		t.Errorf("%d proven handshakes passed after the unproven ones, want 3", proven)
	}
	if l.allow(a, true, now.Add(900*time.Millisecond)) {
		t.Error("a handshake passed before a token was back")
	}
	if !l.allow(a, true, now.Add(time.Second)) {
		t.Error("no handshake passed a second later")
	}
	if !l.allow(udpAddr("192.0.2.2:1000"), false, now) {
		t.Error("another address was refused")
	}
	if l.needsProof(udpAddr("192.0.2.3:1000"), now) {
		t.Error("a new address must prove itself")
	}
}

// A forged flood from an agent's address spends no more than the unproven
// half: the agent, proving its address, still gets in.
func TestHandshakeLimiterForgedFlood(t *testing.T) {
	l := newHandshakeLimiter(60)
	now := time.Unix(1e9, 0)
	agent := udpAddr("198.51.100.7:4433")
	for range 1000 {
		if !l.needsProof(agent, now) {
			l.allow(agent, false, now)
		}
	}
	if !l.allow(agent, true, now) {
		t.Fatal("the agent was refused after a forged flood from its address")
	}
}

// IPv6 peers are counted by /64, IPv4-mapped ones as IPv4.
func TestHandshakeLimiterKeys(t *testing.T) {
	l := newHandshakeLimiter(10) // a burst of 1
	now := time.Unix(1e9, 0)
	if !l.allow(udpAddr("[2001:db8:1:2::1]:1"), true, now) {
		t.Fatal("first handshake refused")
	}
	if l.allow(udpAddr("[2001:db8:1:2:ffff::9]:1"), true, now) {
		t.Error("another address of the same /64 was not counted with the first")
	}
	if !l.allow(udpAddr("[2001:db8:1:3::1]:1"), true, now) {
		t.Error("another /64 was refused")
	}
	if !l.allow(udpAddr("[::ffff:192.0.2.9]:1"), true, now) || l.allow(udpAddr("192.0.2.9:1"), true, now) {
		t.Error("an IPv4-mapped address was not counted as its IPv4 address")
	}
}

// A flood from more addresses than it tracks leaves the limiter's map
// bounded, and from half full on every unproven handshake must prove its
// address (forged sources then never reach the map).
func TestHandshakeLimiterBounded(t *testing.T) {
	l := newHandshakeLimiter(60)
	l.max = 1000
	now := time.Unix(1e9, 0)
	crowded := -1
	for i := range 10 * l.max {
		a := udpAddr(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1).String())
		if l.needsProof(a, now) {
			if crowded < 0 {
				crowded = i
			}
			l.allow(a, true, now) // a real address proves itself
			continue
		}
		l.allow(a, false, now)
	}
	if crowded != l.max/2 {
		t.Errorf("proof asked from the %dth new address on, want %d", crowded, l.max/2)
	}
	if n := len(l.buckets); n > l.max {
		t.Errorf("%d addresses tracked, want at most %d", n, l.max)
	}
	// Once the flood is over and the buckets have filled up again, an
	// unproven handshake passes at once.
	if l.needsProof(udpAddr("192.0.2.1:1"), now.Add(10*time.Second)) {
		t.Error("proof still asked after the flood")
	}
}

func TestHandshakeLimiterOff(t *testing.T) {
	if l := newHandshakeLimiter(0); l != nil {
		t.Errorf("newHandshakeLimiter(0) = %+v, want nil (no limit)", l)
	}
}
