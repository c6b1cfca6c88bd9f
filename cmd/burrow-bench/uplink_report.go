package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// uplinkRowFor is the row of path key under videos downloads, or nil.
func (r *report) uplinkRowFor(key string, videos int) *uplinkRow {
	for _, row := range r.uplink {
		if row.key == key && row.videos == videos && len(row.lat) > 0 {
			return row
		}
	}
	return nil
}

// uplinkAdded is how much path key's percentile p grows from idle to
// videos downloads, in ms.
func (r *report) uplinkAdded(key string, videos int, p float64) float64 {
	idle, busy := r.uplinkRowFor(key, 0), r.uplinkRowFor(key, videos)
	if idle == nil || busy == nil {
		return math.NaN()
	}
	return percentile(busy.lat, p) - percentile(idle.lat, p)
}

// uplinkTargets adds scenario 8's goals: the default transport keeps the
// site responsive while videos fill the home uplink, and leaves a lossy
// QUIC path soon.
func (r *report) uplinkTargets(check func(name string, v float64, ok func(float64) bool, format string)) {
	atMost := func(t float64) func(float64) bool { return func(v float64) bool { return v <= t } }
	atLeast := func(t float64) func(float64) bool { return func(v float64) bool { return v >= t } }
	for videos := 1; videos <= 2; videos++ {
		what := fmt.Sprintf("uplink %s, default transport, %d video(s)", homeUplink, videos)
		check(what+": small request's median added ≤ 40 ms", r.uplinkAdded("auto", videos, 50), atMost(40), "%.0f ms")
		check(what+": p99 added ≤ 80 ms", r.uplinkAdded("auto", videos, 99), atMost(80), "%.0f ms")
		share := math.NaN()
		if row := r.uplinkRowFor("auto", videos); row != nil && len(row.shares) == videos {
			share = 0
			for _, s := range row.shares {
				share += s * 100
			}
		}
		check(what+": the videos keep ≥ 90% of the link", share, atLeast(90), "%.0f%%")
	}
	for _, row := range r.uplinkLossy {
		v := math.NaN()
		if row.runs > 0 {
			v = math.Inf(1)
			if row.switched > 0 {
				v = row.switched.Seconds()
			}
		}
		check(fmt.Sprintf("%s: default transport on TCP within 10 s of a transfer", row.profile), v, atMost(10), "%.1f s")
	}
}

func (r *report) writeUplink(w *strings.Builder) {
	fmt.Fprintf(w, "## Interactive over a home uplink\n\n")
	if !r.plan.scenarios[8] {
		fmt.Fprintf(w, "Not run.\n\n")
		return
	}
	fmt.Fprintf(w, "Scenario 8. The same namespaces as the emulated WAN (relay and client in A, agent and origin in B), joined by a home line: "+
		"%s, the agent's side sending. A visitor's small requests (GET 1 KiB, each on a fresh public connection, timed from the dial to the "+
		"last byte, %v apart) are timed idle, then while one and two videos (the %s file, fetched over and over as fast as it comes) "+
		"fill the link, %v after the videos start. \"direct\" is the client fetching from the origin itself (two round trips: "+
		"the connection, then the request), with BBR in both namespaces; the Burrow paths run with the namespaces' Cubic (QUIC brings its own). "+
		"A video's link share is its goodput while the requests were timed over the nominal rate.\n\n",
		homeUplink, uplinkGap, sizeName(r.plan.wanSize), r.plan.uplinkSettle)
	if len(r.uplink) > 0 {
		fmt.Fprintf(w, "| path | sender's congestion control | videos | p50 ms | p99 ms | p50 added | p99 added | each video's link share | link drops | notes |\n")
		fmt.Fprintf(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n")
		for _, row := range r.uplink {
			cc := row.cc
			if cc == "" {
				cc = "quic-go Cubic"
			}
			added := func(p float64) string {
				if row.videos == 0 {
					return "—"
				}
				v := r.uplinkAdded(row.key, row.videos, p)
				if math.IsNaN(v) {
					return "—"
				}
				return fmt.Sprintf("%+.0f", v)
			}
			shares := make([]string, len(row.shares))
			for i, s := range row.shares {
				shares[i] = fmt.Sprintf("%.0f%%", s*100)
			}
			p50, p99 := "—", "—"
			if len(row.lat) > 0 {
				p50, p99 = fmt.Sprintf("%.0f", percentile(row.lat, 50)), fmt.Sprintf("%.0f", percentile(row.lat, 99))
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |\n", row.name, cc, row.videos, p50, p99,
				added(50), added(99), orDash(strings.Join(shares, " + ")), orDash(row.drops), strings.Join(row.notes, "; "))
		}
		fmt.Fprintf(w, "\n")
	}
	for _, row := range r.uplinkLossy {
		sw := fmt.Sprintf("%.1f s", row.switched.Seconds())
		if row.switched == 0 {
			sw = "not within " + uplinkLossyLimit.String()
		}
		fmt.Fprintf(w, "Default transport (`auto`) over %s: on TCP with BBR %s after the first request; a player asking for %v of video "+
			"at a time got %.0f%% of the link in the first %v. %s\n\n", row.profile, sw, uplinkSegment, row.share*100,
			uplinkLossyWindow.Round(time.Second), strings.Join(row.notes, "; "))
	}
}
