package relay

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// clientLimit counts the requests and upgraded connections in flight per
// client address, so that one visitor (or one attacker) cannot hold every
// tunnel stream. IPv6 clients count per /64, the block one household gets.
// The map holds only addresses with something in flight.
type clientLimit struct {
	max int // 0: no limit

	mu     sync.Mutex
	counts map[netip.Prefix]int // guarded by mu
}

func newClientLimit(max int) *clientLimit {
	return &clientLimit{max: max, counts: map[netip.Prefix]int{}}
}

// acquire takes a slot for addr; release gives it back. ok is false, and
// nothing is taken, when addr already has max in flight.
func (c *clientLimit) acquire(addr netip.Addr) (release func(), ok bool) {
	if c.max <= 0 || !addr.IsValid() {
		return func() {}, true
	}
	key := clientKey(addr)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts[key] >= c.max {
		return nil, false
	}
	c.counts[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.counts[key]--; c.counts[key] <= 0 {
				delete(c.counts, key)
			}
		})
	}, true
}

// inFlight is what addr has in flight now.
func (c *clientLimit) inFlight(addr netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[clientKey(addr)]
}

// limited answers a request over its address's limit with the 429 page.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, host string, addr netip.Addr) {
	s.log.Debug("client over limits.streams_per_client", "client", addr, "limit", s.clients.max)
	s.page(w, r, http.StatusTooManyRequests, pageTooManyStreams, host)
}

func clientKey(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := 32
	if addr.Is6() {
		bits = 64
	}
	p, _ := addr.Prefix(bits)
	return p
}

// clientAddr is the visitor's address: the peer's, or, behind a trusted
// proxy, the one that proxy reports (X-Real-IP, else the last entry of
// X-Forwarded-For, the one the proxy itself added).
func clientAddr(in *http.Request, trusted bool) string {
	peer := in.RemoteAddr
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		peer = ap.Addr().Unmap().String()
	}
	if !trusted {
		return peer
	}
	if v := in.Header.Get("X-Real-IP"); v != "" {
		return v
	}
	if prior := strings.Join(in.Header.Values("X-Forwarded-For"), ", "); prior != "" {
		parts := strings.Split(prior, ",")
		return strings.TrimSpace(parts[len(parts)-1])
	}
	return peer
}
