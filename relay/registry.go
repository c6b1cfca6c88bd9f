package relay

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/burrow-tunnel/burrow/internal/access"
	"github.com/burrow-tunnel/burrow/protocol"
)

// route is one published route of one agent session. Several sessions of
// one agent may publish the same host and prefix: replicas (a second NAS, a
// container restarted beside the old one, a reconnect overlapping the old
// session). Each has its own route, and so its own id on the wire.
type route struct {
	id      uint32
	host    string
	prefix  string // "" or "/a/b", no trailing slash
	agent   string
	session protocol.Session
	streams *atomic.Int64 // tunnel streams open on the session, shared by its routes
	// access is the route's policy, nil when it has none; a route request
	// may change it while the route stays published.
	access atomic.Pointer[access.Guard]
}

// registry is the relay's route table: host, then longest prefix, to the
// live sessions that serve it.
type registry struct {
	nextID atomic.Uint32

	mu     sync.RWMutex
	byHost map[string][]*route // guarded by mu; each slice sorted by prefix length, longest first
	byID   map[uint32]*route   // guarded by mu
}

func newRegistry() *registry {
	return &registry{byHost: map[string][]*route{}, byID: map[uint32]*route{}}
}

// add publishes a route of session s, whose open streams streams counts.
// Routes of the same agent at the same host and prefix are replicas and
// stay; if another agent serves them, nothing is added and ok is false.
// replicas is how many sessions serve the route now, this one included.
// The route is published with guard as its policy (nil: none).
func (r *registry) add(agent string, s protocol.Session, streams *atomic.Int64, host, prefix string, guard *access.Guard) (rt *route, replicas int, owner string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byHost[host]
	for _, old := range list {
		if old.prefix != prefix {
			continue
		}
		if old.agent != agent {
			return nil, 0, old.agent, false
		}
		replicas++
	}
	rt = &route{id: r.nextID.Add(1), host: host, prefix: prefix, agent: agent, session: s, streams: streams}
	rt.access.Store(guard)
	list = append(list, rt)
	// Longest prefix first; replicas of one prefix adjacent, oldest first.
	sort.SliceStable(list, func(i, j int) bool {
		if a, b := list[i].prefix, list[j].prefix; len(a) != len(b) {
			return len(a) > len(b)
		}
		return list[i].prefix < list[j].prefix
	})
	r.byHost[host] = list
	r.byID[rt.id] = rt
	return rt, replicas + 1, "", true
}

// replicas is how many sessions serve host and prefix.
func (r *registry) replicas(host, prefix string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, rt := range r.byHost[host] {
		if rt.prefix == prefix {
			n++
		}
	}
	return n
}

// remove unpublishes routes; the other replicas of each stay.
func (r *registry) remove(routes []*route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range routes {
		if r.byID[rt.id] != rt {
			continue // removed already
		}
		delete(r.byID, rt.id)
		list := r.byHost[rt.host]
		for i, x := range list {
			if x == rt {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.byHost, rt.host)
		} else {
			r.byHost[rt.host] = list
		}
	}
}

// lookup finds the route for host and path: of the longest prefix that
// matches, the replica with the fewest open streams, the newest on a tie (a
// session that replaces one whose agent is gone but not yet noticed).
func (r *registry) lookup(host, path string) *route {
	return r.pick(host, path, nil)
}

// pick is lookup, skipping the route avoid (one that just failed).
func (r *registry) pick(host, path string, avoid *route) *route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var best *route
	matched := false
	var prefix string
	for _, rt := range r.byHost[host] {
		if matched && rt.prefix != prefix {
			break // replicas are adjacent; shorter prefixes follow
		}
		if !prefixMatches(rt.prefix, path) {
			continue
		}
		matched, prefix = true, rt.prefix
		if rt == avoid {
			continue
		}
		if best == nil || rt.streams.Load() < best.streams.Load() ||
			(rt.streams.Load() == best.streams.Load() && rt.id > best.id) {
			best = rt
		}
	}
	return best
}

// owner is the agent that serves host and prefix, or "".
func (r *registry) owner(host, prefix string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, rt := range r.byHost[host] {
		if rt.prefix == prefix {
			return rt.agent
		}
	}
	return ""
}

// hasHost reports whether any route is published at host.
func (r *registry) hasHost(host string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byHost[host]) > 0
}

// hosts are the hosts that some session serves.
func (r *registry) hosts() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byHost))
	for h := range r.byHost {
		out = append(out, h)
	}
	return out
}

func (r *registry) byRouteID(id uint32) *route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

func prefixMatches(prefix, path string) bool {
	if prefix == "" {
		return true
	}
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest == "" || rest[0] == '/')
}
