package relay

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/protocol"
)

// SessionStatus is one agent session as the status shows it.
type SessionStatus struct {
	Agent     string        `json:"agent"`
	ID        string        `json:"id"`
	Transport string        `json:"transport"`
	Remote    string        `json:"remote"`
	Since     time.Time     `json:"since"`
	RTT       time.Duration `json:"rtt_ns,omitempty"`
	LossRate  float64       `json:"loss_rate,omitempty"`
	Streams   int64         `json:"streams"`
	// BytesReceived counts what arrived from the agent on the session.
	BytesReceived uint64 `json:"bytes_received"`
}

// RouteStatus is one published route and the sessions that serve it.
type RouteStatus struct {
	Host     string   `json:"host"`
	Prefix   string   `json:"prefix,omitempty"`
	Agent    string   `json:"agent"`
	Sessions []string `json:"sessions"`
	// BytesSent counts the response bytes sent to visitors of the host, live.
	BytesSent int64 `json:"bytes_sent"`
}

// RelayStatus is the relay's part of the admin status.
type RelayStatus struct {
	Listeners map[string]string `json:"listeners"`
	Agents    []string          `json:"agents_granted"`
	Sessions  []SessionStatus   `json:"sessions"`
	Routes    []RouteStatus     `json:"routes"`
	// Certificates are the ones the relay serves, soonest to expire first.
	Certificates []CertStatus `json:"certificates"`
}

// Status is the relay's state for the admin listener: ready once its
// listeners are up.
func (s *Server) Status() admin.Status {
	st := RelayStatus{Listeners: map[string]string{}}
	if s.tunnel != nil {
		st.Listeners["tunnel"] = s.tunnel.Addr().String()
	}
	if a := s.HTTPAddr(); a != nil {
		st.Listeners["http"] = a.String()
	}
	if a := s.HTTPSAddr(); a != nil {
		st.Listeners["https"] = a.String()
	}
	for _, g := range s.current().Agents {
		st.Agents = append(st.Agents, g.Name)
	}
	sessions := s.live.Items()
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].since.Before(sessions[j].since) })
	byRoute := map[[2]string]*RouteStatus{}
	for _, ts := range sessions {
		ss := SessionStatus{Agent: ts.agent, ID: ts.id, Transport: ts.sess.Transport(),
			Remote: ts.sess.RemoteAddr().String(), Since: ts.since, BytesReceived: ts.sess.BytesReceived()}
		if ps, ok := ts.sess.(protocol.PathStatser); ok {
			p := ps.PathStats()
			ss.RTT = p.SmoothedRTT
			if p.PacketsSent > 0 {
				ss.LossRate = float64(p.PacketsLost) / float64(p.PacketsSent)
			}
		}
		for _, rt := range ts.published() {
			ss.Streams = rt.streams.Load()
			k := [2]string{rt.host, rt.prefix}
			r := byRoute[k]
			if r == nil {
				r = &RouteStatus{Host: rt.host, Prefix: rt.prefix, Agent: rt.agent, BytesSent: s.metrics.sent(rt.host).Load()}
				byRoute[k] = r
			}
			r.Sessions = append(r.Sessions, ts.id)
		}
		st.Sessions = append(st.Sessions, ss)
	}
	for _, r := range byRoute {
		st.Routes = append(st.Routes, *r)
	}
	slices.SortFunc(st.Routes, func(a, b RouteStatus) int {
		return strings.Compare(a.Host+a.Prefix, b.Host+b.Prefix)
	})
	st.Certificates = s.certificates()
	ready, reason := s.listened, ""
	switch {
	case !ready:
		reason = "listeners not up"
	case s.draining.Err() != nil:
		ready, reason = false, "shutting down"
	}
	return admin.Status{Role: "relay", Ready: ready, Reason: reason, Since: s.started, Detail: st, Errors: s.recent.Lines()}
}

// StatusPage renders the relay's status page.
func StatusPage(w http.ResponseWriter, st admin.Status) {
	_ = statusTmpl.Execute(w, st)
}

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"ms": func(d time.Duration) string {
		if d == 0 {
			return "–"
		}
		return d.Round(100 * time.Microsecond).String()
	},
	"pct": func(f float64) string { return strings.TrimRight(strings.TrimRight(strconvF(f*100), "0"), ".") + " %" },
	"expires": func(t time.Time) string {
		left := time.Until(t)
		when := t.UTC().Format("2006-01-02 15:04 UTC")
		if left <= 0 {
			return when + " (expired)"
		}
		return fmt.Sprintf("%s (in %d days)", when, int(left.Hours()/24))
	},
}).Parse(statusPageHTML))
