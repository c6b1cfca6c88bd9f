package transport

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// handshakeLimiter is a token bucket per source address for tunnel
// handshakes: perMinute a minute, up to a tenth of that at once. It is
// consulted before any TLS work: a TCP connection over the limit is reset
// as it is accepted, and a QUIC one refused in answer to its first packet.
//
// A TCP peer has proven its address by completing the TCP handshake; a QUIC
// peer's first packet has not, and could carry a forged one to spend the
// tokens of the address an agent connects from. So an unproven QUIC
// handshake may not spend the reserve, the last half of the burst: once only
// the reserve is left, the relay answers with a QUIC Retry (stateless, a
// packet smaller than the one it answers), and only a peer that receives it
// at that address comes back to spend. A forged flood then costs an agent one
// round trip more, never its connection. While it tracks many addresses
// (half its capacity: a flood from many, perhaps forged, addresses), every
// unproven QUIC handshake must prove its address, so that forged packets
// cost the relay neither a TLS handshake nor room in its map.
type handshakeLimiter struct {
	rate    float64 // tokens a second
	burst   float64
	reserve float64 // tokens only a proven address may spend
	max     int     // addresses tracked

	mu        sync.Mutex
	buckets   map[netip.Addr]bucket // guarded by mu
	lastSweep time.Time             // guarded by mu: when idle addresses were last forgotten
}

type bucket struct {
	tokens float64
	at     time.Time // when tokens was computed
}

// maxLimitedAddrs bounds the addresses a handshakeLimiter tracks (about
// 64 bytes each): a flood from many addresses, forged or not, makes it
// forget the idle ones first, then any, never grow.
const maxLimitedAddrs = 1 << 14

// newHandshakeLimiter returns a limiter, or nil when perMinute is 0 (off).
func newHandshakeLimiter(perMinute int) *handshakeLimiter {
	if perMinute <= 0 {
		return nil
	}
	burst := max(perMinute/10, 1)
	return &handshakeLimiter{
		rate:    float64(perMinute) / 60,
		burst:   float64(burst),
		reserve: float64(burst / 2),
		max:     maxLimitedAddrs,
		buckets: map[netip.Addr]bucket{},
	}
}

// limitKey is what one peer is counted by: its IPv4 address, or the /64 of
// its IPv6 address (the block one host usually gets, and can pick any
// address in).
func limitKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is4() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}

// addrOf is the IP address of a socket address, or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr()
	case *net.TCPAddr:
		return a.AddrPort().Addr()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// tokensLocked is what addr's bucket holds at now.
func (l *handshakeLimiter) tokensLocked(addr netip.Addr, now time.Time) float64 {
	b, ok := l.buckets[addr]
	if !ok {
		return l.burst
	}
	return min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
}

// spendableLocked reports whether a handshake from addr may spend a token
// now, and what the bucket then holds.
func (l *handshakeLimiter) spendableLocked(addr netip.Addr, proven bool, now time.Time) (float64, bool) {
	tokens := l.tokensLocked(addr, now)
	if proven {
		return tokens, tokens >= 1
	}
	return tokens, tokens-1 >= l.reserve && !l.crowdedLocked(now)
}

// crowdedLocked reports whether the limiter tracks so many addresses that
// only proven ones may start a handshake. It forgets the idle ones first,
// at most once per refill of a bucket.
func (l *handshakeLimiter) crowdedLocked(now time.Time) bool {
	if len(l.buckets) < l.max/2 {
		return false
	}
	if now.Sub(l.lastSweep).Seconds()*l.rate >= l.burst {
		l.forgetIdleLocked(now)
	}
	return len(l.buckets) >= l.max/2
}

// needsProof reports whether a QUIC handshake from a, not yet proven, must
// prove its address first.
func (l *handshakeLimiter) needsProof(a net.Addr, now time.Time) bool {
	addr := limitKey(addrOf(a))
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.spendableLocked(addr, false, now)
	return !ok
}

// allow spends a token of a's bucket for a handshake, and reports false,
// spending nothing, when the bucket has none left for it.
func (l *handshakeLimiter) allow(a net.Addr, proven bool, now time.Time) bool {
	addr := limitKey(addrOf(a))
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens, ok := l.spendableLocked(addr, proven, now)
	if !ok {
		return false
	}
	if _, known := l.buckets[addr]; !known && len(l.buckets) >= l.max {
		l.makeRoomLocked(now)
	}
	l.buckets[addr] = bucket{tokens: tokens - 1, at: now}
	return true
}

// forgetIdleLocked forgets the addresses whose bucket has filled up again:
// as good as never seen.
func (l *handshakeLimiter) forgetIdleLocked(now time.Time) {
	for addr := range l.buckets {
		if l.tokensLocked(addr, now) >= l.burst {
			delete(l.buckets, addr)
		}
	}
	l.lastSweep = now
}

// makeRoomLocked forgets the idle addresses and, when that leaves the map
// more than three quarters full, arbitrary others, so that the next time is
// a quarter of the map away.
func (l *handshakeLimiter) makeRoomLocked(now time.Time) {
	l.forgetIdleLocked(now)
	for addr := range l.buckets {
		if len(l.buckets) <= l.max*3/4 {
			break
		}
		delete(l.buckets, addr)
	}
}
