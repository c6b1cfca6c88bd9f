package access

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTracked bounds the addresses a limiter remembers; past it, the ones
// with nothing left to remember are forgotten first.
const maxTracked = 65536

// maxBlock caps a growing block.
const maxBlock = 24 * time.Hour

// clientKey groups addresses as one client: an IPv4 address, or an IPv6
// /64 (one household's or one server's whole network).
func clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// loginLimiter blocks a client after failures failed sign-ins within window,
// for block, then twice as long at each further block, up to maxBlock. A
// successful sign-in from the client forgets it.
type loginLimiter struct {
	failures int
	window   time.Duration
	block    time.Duration

	mu      sync.Mutex
	clients map[netip.Prefix]*attempts // guarded by mu
}

type attempts struct {
	fails   []time.Time // within the window, oldest first
	until   time.Time   // blocked until
	blocks  int         // blocks so far: the next one lasts block<<blocks
	lastHit time.Time
}

func newLoginLimiter(failures int, window, block time.Duration) *loginLimiter {
	return &loginLimiter{failures: failures, window: window, block: block, clients: map[netip.Prefix]*attempts{}}
}

// blocked reports whether addr is blocked now, and until when.
func (l *loginLimiter) blocked(addr netip.Addr) (time.Time, bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.clients[clientKey(addr)]
	if a == nil || !now.Before(a.until) {
		return time.Time{}, false
	}
	return a.until, true
}

// fail counts a failed sign-in from addr. When it starts a block, it returns
// the block's end and how many failures led to it.
func (l *loginLimiter) fail(addr netip.Addr) (until time.Time, count int, started bool) {
	now := time.Now()
	key := clientKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.clients[key]
	if a == nil {
		l.sweepLocked(now)
		a = &attempts{}
		l.clients[key] = a
	}
	a.lastHit = now
	if now.Before(a.until) {
		return a.until, len(a.fails), false // already blocked: answered 429 before it got here
	}
	keep := a.fails[:0]
	for _, t := range a.fails {
		if now.Sub(t) < l.window {
			keep = append(keep, t)
		}
	}
	a.fails = append(keep, now)
	if len(a.fails) < l.failures {
		return time.Time{}, len(a.fails), false
	}
	d := min(l.block<<min(a.blocks, 16), maxBlock)
	a.blocks++
	a.until = now.Add(d)
	count = len(a.fails)
	a.fails = a.fails[:0]
	return a.until, count, true
}

// succeed forgets addr's failures and blocks.
func (l *loginLimiter) succeed(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, clientKey(addr))
}

// sweepLocked forgets clients with no block running and no failure within
// the window, once the map is full.
func (l *loginLimiter) sweepLocked(now time.Time) {
	if len(l.clients) < maxTracked {
		return
	}
	for k, a := range l.clients {
		// A client unheard of for a day starts afresh: its growing block resets.
		if !now.Before(a.until) && (now.Sub(a.lastHit) >= l.window && a.until.IsZero() || now.Sub(a.lastHit) >= maxBlock) {
			delete(l.clients, k)
		}
	}
	for k := range l.clients { // still full: forget the oldest-looking at random
		if len(l.clients) < maxTracked {
			break
		}
		delete(l.clients, k)
	}
}

// rateLimiter caps each client's request rate with a token bucket.
type rateLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[netip.Prefix]*rate.Limiter // guarded by mu
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	return &rateLimiter{limit: rate.Limit(perSecond), burst: burst, clients: map[netip.Prefix]*rate.Limiter{}}
}

// allow takes a token for addr's request.
func (l *rateLimiter) allow(addr netip.Addr) bool {
	key := clientKey(addr)
	l.mu.Lock()
	lim := l.clients[key]
	if lim == nil {
		if len(l.clients) >= maxTracked {
			now := time.Now()
			for k, x := range l.clients {
				if x.TokensAt(now) >= float64(l.burst) {
					delete(l.clients, k) // full again: it remembers nothing
				}
			}
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.clients[key] = lim
	}
	l.mu.Unlock()
	return lim.Allow()
}
