package agent

import (
	"cmp"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/protocol"
)

// liveSessions are the welcomed sessions, oldest first.
func (a *Agent) liveSessions() []*session {
	out := a.live.Items()
	sort.Slice(out, func(i, j int) bool { return out[i].since.Before(out[j].since) })
	return out
}

// SessionStatus is one relay session as the status shows it.
type SessionStatus struct {
	ID        string        `json:"id"`
	Relay     string        `json:"relay"`
	Transport string        `json:"transport"`
	Since     time.Time     `json:"since"`
	RTT       time.Duration `json:"rtt_ns,omitempty"`
	Streams   int64         `json:"streams"`
}

// RouteStatus is one configured route: published or not, and why not.
type RouteStatus struct {
	Host      string `json:"host"`
	Prefix    string `json:"prefix,omitempty"`
	Service   string `json:"service"`
	Published bool   `json:"published"`
	Reason    string `json:"reason,omitempty"`
}

// AgentStatus is the agent's part of the admin status.
type AgentStatus struct {
	Relay string `json:"relay"`
	// State is the link's state with one relay connection, or a count.
	State string `json:"state"`
	// Relays are the agent's connections, one per relay address and slot.
	Relays   []RelayStatus   `json:"relays"`
	Sessions []SessionStatus `json:"sessions"`
	Routes   []RouteStatus   `json:"routes"`
}

// RelayStatus is one connection to one relay address.
type RelayStatus struct {
	Relay      string `json:"relay"`
	Connection int    `json:"connection"`
	State      string `json:"state"`
}

// Status is the agent's state: ready while a session is up and every route
// is published on one.
func (a *Agent) Status() admin.Status {
	st := AgentStatus{Relay: strings.Join(a.cfg.relayList(), ", ")}
	links := a.links.Items()
	slices.SortFunc(links, func(x, y *link) int { return cmp.Or(strings.Compare(x.name, y.name), x.slot-y.slot) })
	refused := map[[2]string]string{}
	up := 0
	for _, l := range links {
		l.mu.Lock()
		st.Relays = append(st.Relays, RelayStatus{Relay: l.name, Connection: l.slot, State: l.state})
		maps.Copy(refused, l.refused)
		if strings.HasPrefix(l.state, "connected") {
			up++
		}
		l.mu.Unlock()
	}
	switch {
	case len(st.Relays) == 1:
		st.State = st.Relays[0].State
	case len(st.Relays) > 1:
		st.State = fmt.Sprintf("%d of %d relay connections up", up, len(st.Relays))
	}
	published := map[[2]string]bool{}
	for _, s := range a.liveSessions() {
		ss := SessionStatus{ID: s.id, Relay: s.l.name, Transport: s.sess.Transport(), Since: s.since, Streams: s.active.Load()}
		if ps, ok := s.sess.(protocol.PathStatser); ok {
			ss.RTT = ps.PathStats().SmoothedRTT
		}
		st.Sessions = append(st.Sessions, ss)
		for _, rt := range s.routes.all() {
			published[[2]string{rt.Host, normPrefix(rt.Prefix)}] = true
		}
	}
	ready, reason := len(st.Sessions) > 0, ""
	if !ready {
		reason = "not connected to the relay"
	}
	for _, r := range a.rc.Load().routes {
		k := [2]string{r.Host, normPrefix(r.Prefix)}
		rs := RouteStatus{Host: r.Host, Prefix: r.Prefix, Service: r.Service, Published: published[k]}
		if !rs.Published {
			rs.Reason = refused[k]
			if rs.Reason == "" {
				rs.Reason = "not published (see the agent's log)"
			}
			if ready {
				ready, reason = false, "route "+r.Host+r.Prefix+" not published: "+rs.Reason
			}
		}
		st.Routes = append(st.Routes, rs)
	}
	checks := map[string]string{}
	for _, r := range st.Relays {
		checks[fmt.Sprintf("relay %s #%d", r.Relay, r.Connection)] = r.State
	}
	return admin.Status{Role: "agent", Ready: ready, Reason: reason, Since: a.started, Detail: st, Errors: a.recent.Lines(), Checks: checks}
}

// agentCollector reports the live sessions at scrape time, so that the
// data path pays nothing for them.
type agentCollector struct {
	a        *Agent
	sessions *prometheus.Desc
	rtt      *prometheus.Desc
}

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.sessions; ch <- c.rtt }

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	count := map[[2]string]float64{} // relay, transport
	rtt := map[string]float64{}      // relay: the longest of its sessions'
	for _, l := range c.a.links.Items() {
		for _, tr := range []string{"quic", "tcp"} {
			count[[2]string{l.name, tr}] += 0
		}
	}
	for _, s := range c.a.liveSessions() {
		count[[2]string{s.l.name, s.sess.Transport()}]++
		if ps, ok := s.sess.(protocol.PathStatser); ok {
			rtt[s.l.name] = max(rtt[s.l.name], ps.PathStats().SmoothedRTT.Seconds())
		}
	}
	for relay, v := range rtt {
		ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, v, relay)
	}
	for k, v := range count {
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, v, k[0], k[1])
	}
}

// newMetrics registers the agent's metrics.
func (a *Agent) newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	a.reconnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "burrow_agent_reconnects_total", Help: "Sessions to the relay lost and dialled again.",
	})
	reg.MustRegister(a.reconnects, agentCollector{
		a:        a,
		sessions: prometheus.NewDesc("burrow_agent_sessions", "Sessions to the relay, by relay and transport.", []string{"relay", "transport"}, nil),
		rtt:      prometheus.NewDesc("burrow_agent_session_rtt_seconds", "Smoothed round trip of the session to the relay (QUIC).", []string{"relay"}, nil),
	}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// StatusPage renders the agent's status page.
func StatusPage(w http.ResponseWriter, st admin.Status) { _ = statusTmpl.Execute(w, st) }

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Burrow agent — status</title>
<style>body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd}th{background:#f6f6f6}ol.log{padding-left:1.4em;font-size:13px}ol.log code{white-space:pre-wrap;word-break:break-all}.ok{color:#17652b}.bad{color:#a11}</style>
</head><body><h1>Burrow agent</h1>
<p>{{if .Ready}}<span class="ok">● ready</span>{{else}}<span class="bad">● not ready</span>: {{.Reason}}{{end}} · up {{ago .Since}} · relay {{.Detail.Relay}}</p>
{{if gt (len .Detail.Relays) 1}}<h2>Relays</h2><table id="relays"><tr><th>relay</th><th>connection</th><th>state</th></tr>
{{range .Detail.Relays}}<tr><td>{{.Relay}}</td><td>{{.Connection}}</td><td>{{.State}}</td></tr>{{end}}</table>{{end}}
<h2>Sessions</h2>{{with .Detail.Sessions}}<table><tr><th>session</th><th>relay</th><th>transport</th><th>connected for</th><th>RTT</th><th>streams</th></tr>
{{range .}}<tr><td>{{.ID}}</td><td>{{.Relay}}</td><td>{{.Transport}}</td><td>{{ago .Since}}</td><td>{{if .RTT}}{{.RTT}}{{else}}–{{end}}</td><td>{{.Streams}}</td></tr>{{end}}</table>
{{else}}<p>Not connected. Last state: {{.Detail.State}}</p>{{end}}
<h2>Routes</h2><table><tr><th>host</th><th>prefix</th><th>service</th><th>published</th></tr>
{{range .Detail.Routes}}<tr><td>{{.Host}}</td><td>{{.Prefix}}</td><td>{{.Service}}</td><td>{{if .Published}}<span class="ok">yes</span>{{else}}<span class="bad">no</span>: {{.Reason}}{{end}}</td></tr>{{end}}</table>
<h2>Recent errors</h2>
{{with .Errors}}<ol id="errors" class="log">{{range .}}<li><code>{{.}}</code></li>{{end}}</ol>{{else}}<p class="ok">None since the agent started.</p>{{end}}
<p><small><a href="/metrics">/metrics</a> · <a href="/status.json">/status.json</a> · <a href="/readyz">/readyz</a></small></p>
</body></html>
`))
