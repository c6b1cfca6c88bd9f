package relay

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/burrow-tunnel/burrow/protocol"
)

// route is one published route of one agent session.
type route struct {
	id      uint32
	host    string
	prefix  string // "" or "/a/b", no trailing slash
	agent   string
	session protocol.Session
}

// registry is the relay's route table: host, then longest prefix, to a live session.
type registry struct {
	nextID atomic.Uint32

	mu     sync.RWMutex
	byHost map[string][]*route // guarded by mu; each slice sorted by prefix length, longest first
	byID   map[uint32]*route   // guarded by mu
}

func newRegistry() *registry {
	return &registry{byHost: map[string][]*route{}, byID: map[uint32]*route{}}
}

// add publishes a route. A route of the same agent at the same host and prefix
// is replaced (a reconnect); one of another agent is kept and ok is false.
func (r *registry) add(agent string, s protocol.Session, host, prefix string) (rt *route, owner string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.byHost[host]
	for i, old := range list {
		if old.prefix != prefix {
			continue
		}
		if old.agent != agent {
			return nil, old.agent, false
		}
		delete(r.byID, old.id)
		list = append(list[:i:i], list[i+1:]...)
		break
	}
	rt = &route{id: r.nextID.Add(1), host: host, prefix: prefix, agent: agent, session: s}
	list = append(list, rt)
	sort.SliceStable(list, func(i, j int) bool { return len(list[i].prefix) > len(list[j].prefix) })
	r.byHost[host] = list
	r.byID[rt.id] = rt
	return rt, "", true
}

// remove unpublishes routes, unless a newer session replaced them already.
func (r *registry) remove(routes []*route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rt := range routes {
		if r.byID[rt.id] != rt {
			continue
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

// lookup finds the route for host and path.
func (r *registry) lookup(host, path string) *route {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, rt := range r.byHost[host] {
		if prefixMatches(rt.prefix, path) {
			return rt
		}
	}
	return nil
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
