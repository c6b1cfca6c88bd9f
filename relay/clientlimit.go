package relay

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// clientLimit counts the requests and upgraded connections in flight per
// client address, so that one visitor (or one attacker) cannot hold every
// tunnel stream. IPv6 clients count per /64, the block one household gets.
// A request over the limit waits up to clientQueueWait for a slot (a page of
// thumbnails is a burst), then is refused. The map holds only addresses
// with something in flight or waiting.
type clientLimit struct {
	max int // 0: no limit

	mu      sync.Mutex
	clients map[netip.Prefix]*clientSlots // guarded by mu
}

// clientSlots is one address's semaphore, and how many hold or wait for it.
type clientSlots struct {
	sem  chan struct{}
	refs int // guarded by clientLimit.mu
}

// clientQueueWait is how long a request over its address's limit waits.
const clientQueueWait = 5 * time.Second

func newClientLimit(max int) *clientLimit {
	return &clientLimit{max: max, clients: map[netip.Prefix]*clientSlots{}}
}

// acquire takes a slot for addr, waiting up to clientQueueWait; release
// gives it back. ok is false, and nothing is taken, when no slot came free
// in time or ctx ended.
func (c *clientLimit) acquire(ctx context.Context, addr netip.Addr) (release func(), ok bool) {
	if c.max <= 0 || !addr.IsValid() {
		return func() {}, true
	}
	key := clientKey(addr)
	c.mu.Lock()
	cs := c.clients[key]
	if cs == nil {
		cs = &clientSlots{sem: make(chan struct{}, c.max)}
		c.clients[key] = cs
	}
	cs.refs++
	c.mu.Unlock()
	unref := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if cs.refs--; cs.refs == 0 {
			delete(c.clients, key)
		}
	}
	select {
	case cs.sem <- struct{}{}:
	default:
		t := time.NewTimer(clientQueueWait)
		defer t.Stop()
		select {
		case cs.sem <- struct{}{}:
		case <-t.C:
			unref()
			return nil, false
		case <-ctx.Done():
			unref()
			return nil, false
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-cs.sem
			unref()
		})
	}, true
}

// inFlight is what addr holds now.
func (c *clientLimit) inFlight(addr netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs := c.clients[clientKey(addr)]; cs != nil {
		return len(cs.sem)
	}
	return 0
}

// limited answers a request over its address's limit with the 429 page.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, host string, addr netip.Addr) {
	s.log.Debug("client over limits.streams_per_client", "client", addr, "limit", s.clients.max)
	// The connection goes too: a client this far over its limit is more
	// likely an attack than a household, and an idle one would stay open.
	// (HTTP/2 turns this into a GOAWAY; HTTP/3 must not carry the header.)
	if r.ProtoMajor < 3 {
		w.Header().Set("Connection", "close")
	}
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

// limitAddr is the address limits.streams_per_client counts a request
// under: the peer's, or behind a trusted proxy the last X-Forwarded-For
// entry, the one that proxy added itself (X-Real-IP may be the client's own
// word, passed on). An entry that does not parse counts as the proxy's.
func limitAddr(r *http.Request, trusted bool) netip.Addr {
	peer, _ := netip.ParseAddrPort(r.RemoteAddr)
	if trusted {
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			parts := strings.Split(prior[len(prior)-1], ",")
			if a, err := netip.ParseAddr(strings.TrimSpace(parts[len(parts)-1])); err == nil {
				return a.Unmap()
			}
		}
	}
	return peer.Addr().Unmap()
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
