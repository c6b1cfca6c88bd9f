package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// soakFor is the soak's result for transport key, or nil.
func (r *report) soakFor(key string) *soakResult {
	for _, s := range r.soak {
		if s.key == key && len(s.samples) > 0 {
			return s
		}
	}
	return nil
}

// soakTargets adds scenario 9's goals: the TCP relay's peak memory stays
// near QUIC's and small, and nothing grows while the load holds steady.
func (r *report) soakTargets(check func(name string, v float64, ok func(float64) bool, format string)) {
	atMost := func(t float64) func(float64) bool { return func(v float64) bool { return v <= t } }
	peak := func(key string) float64 {
		s := r.soakFor(key)
		if s == nil {
			return math.NaN()
		}
		p, _ := s.peak()
		return float64(p) / mib
	}
	check("soak: relay peak RSS TCP+yamux ≤ 1.5× QUIC", peak("tcp")/peak("quic"), atMost(1.5), "%.2f×")
	check("soak: relay peak RSS TCP+yamux < 96 MiB", peak("tcp"), func(v float64) bool { return v < 96 }, "%.1f MiB")
	for _, key := range []string{"quic", "tcp"} {
		v := math.NaN()
		format := "%.0f of 3 grew"
		if s := r.soakFor(key); s != nil {
			g := s.growth()
			v = float64(len(g))
			if len(g) > 0 {
				format = strings.ReplaceAll(strings.Join(g, ", "), "%", "%%") + " (%.0f of 3 grew)"
			}
		}
		check(fmt.Sprintf("soak: no growth first → last minute (RSS, fds, goroutines), %s", transportName(key)), v, atMost(0), format)
	}
}

func (r *report) writeSoak(w *strings.Builder) {
	fmt.Fprintf(w, "## Mixed-load soak\n\n")
	if !r.plan.scenarios[9] {
		fmt.Fprintf(w, "Not run.\n\n")
		return
	}
	p := r.plan
	fmt.Fprintf(w, "Scenario 9. For %v, %d keep-alive clients per transport, the QUIC and TCP+yamux paths loaded at the same time "+
		"(fresh relay and agent each): 40%% whole downloads of the 1 MiB file, 10%% whole downloads of the %s file, "+
		"25%% seeks (an open Range at a random offset of the %s file, read at %d MB/s and abandoned after %v), "+
		"25%% websockets (open, echo 3 messages, close). Every second: the relay's VmRSS, its open descriptors (/proc/PID/fd), "+
		"its goroutines (go_goroutines from its admin /metrics) and the agent's VmRSS. "+
		"\"First\" and \"last\" are the means over the load's first and last %v; "+
		"no growth means last − first ≤ max(%.0f%%, %d MiB) for RSS and ≤ max(%.0f%%, %d) for descriptors and goroutines. "+
		"\"After\" is one reading %v after the load ended.\n\n",
		p.soakDuration, soakClients, sizeName(p.bigSize), sizeName(p.bigSize), viewerRate/1_000_000, soakSeek,
		min(p.soakDuration/4, time.Minute), soakRSSShare*100, soakRSSAbs/mib, soakCountShare*100, soakCountAbs, p.soakAfter)
	if len(r.soak) == 0 {
		fmt.Fprintf(w, "No result (see Notes).\n\n")
		return
	}
	fmt.Fprintf(w, "| transport | relay peak RSS MiB | agent peak RSS MiB | relay RSS MiB first → last → after | fds first → last → after | goroutines first → last → after | growth | requests | errors |\n")
	fmt.Fprintf(w, "| --- | ---: | ---: | --- | --- | --- | --- | --- | ---: |\n")
	for _, s := range r.soak {
		if len(s.samples) == 0 {
			fmt.Fprintf(w, "| %s | no samples | | | | | | | |\n", transportName(s.key))
			continue
		}
		f, l := s.first(), s.last()
		relay, agent := s.peak()
		g := strings.Join(s.growth(), ", ")
		if g == "" {
			g = "none"
		}
		var ops []string
		for i, n := range s.ops {
			ops = append(ops, fmt.Sprintf("%d %s", n, soakOps[i]))
		}
		gor := func(v float64) string {
			if v < 0 {
				return "?"
			}
			return fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f → %.1f → %.1f | %.0f → %.0f → %d | %s → %s → %s | %s | %s | %d |\n",
			transportName(s.key), float64(relay)/mib, float64(agent)/mib,
			f.rss/mib, l.rss/mib, float64(s.after.relayRSS)/mib,
			f.fds, l.fds, s.after.fds,
			gor(f.goroutines), gor(l.goroutines), gor(float64(s.after.goroutines)),
			g, strings.Join(ops, ", "), s.errors)
	}
	fmt.Fprintf(w, "\n")
	for _, s := range r.soak {
		if s.errText != "" {
			fmt.Fprintf(w, "%s errors, first: %s\n\n", transportName(s.key), s.errText)
		}
	}
}
