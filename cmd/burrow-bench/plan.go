package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/internal/wanemu"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
)

// plan is how much each scenario does; -quick shrinks it.
type plan struct {
	runs         int           // runs per measurement (the table shows their median)
	bigSize      int64         // the large file of scenarios 1, 2, 4, 5
	parallel     int           // downloads in scenarios 2 and 4
	wrkDuration  time.Duration // scenario 3
	interactiveN int           // sequential small requests in scenario 4
	ttfbSamples  int           // fresh connections per run in scenario 5
	streams      int           // concurrent 1 MiB downloads in scenario 6
	websockets   int           // idle websockets held in scenario 6
	wanProfiles  []wanProfile  // scenario 7
	wanSize      int64         // one WAN download
	wanCap       time.Duration // a WAN download stops here and counts what arrived
	wanSeeks     int           // Range requests per WAN run
	scenarios    map[int]bool  // which scenarios run

	// Scenario 8.
	uplinkSamples int           // small requests timed per path and load
	uplinkSettle  time.Duration // from the videos' start to the first request timed
	uplinkPaths   []string      // the Burrow transports measured
	uplinkDirect  bool          // measure the direct baseline too
	uplinkLossy   bool          // time transport auto over the lossy profile

	// Scenario 9.
	soakDuration time.Duration // the mixed load, per transport
	soakAfter    time.Duration // from the load's end to the after-load reading

	// Scenario 10.
	relaysConns  []int         // connections_per_relay with two relays, for the agent's memory
	relaysSettle time.Duration // idle after the last session connects, before the agent's RSS is read
}

// wanProfile is one emulated link.
type wanProfile struct {
	name     string
	rtt      time.Duration
	loss     float64
	rateBits int64
	// bothCC measures the TCP transport with cubic and with bbr.
	bothCC bool
	// queuePackets sizes the bottleneck's queue in full-size packets; 0
	// is wanemu's default of 1.5 times the bandwidth-delay product.
	queuePackets int
}

// wanemu is the link's profile for the emulator.
func (w wanProfile) wanemu() wanemu.Profile {
	return wanemu.Profile{RTT: w.rtt, Loss: w.loss, RateBitsPerSec: w.rateBits, QueueBytes: w.queuePackets * 1500}
}

func (w wanProfile) String() string {
	s := fmt.Sprintf("%d ms RTT, %g%% loss, %d Mbit/s", w.rtt.Milliseconds(), w.loss*100, w.rateBits/1e6)
	if w.queuePackets > 0 {
		s += fmt.Sprintf(", %d-packet queue", w.queuePackets)
	}
	return s
}

var (
	wan40 = wanProfile{name: "40ms", rtt: 40 * time.Millisecond, rateBits: 200e6}
	wan80 = wanProfile{name: "80ms-loss", rtt: 80 * time.Millisecond, loss: 0.005, rateBits: 200e6, bothCC: true}

	allWAN = []wanProfile{wan40, wan80}
)

// scenarioNames are the report's section names, by scenario number.
var scenarioNames = map[int]string{
	1:  "Single large download",
	2:  "Parallel large downloads",
	3:  "Small requests (wrk)",
	4:  "Interactive under load",
	5:  "Time to first byte",
	6:  "Scale",
	7:  "Emulated WAN",
	8:  "Interactive over a home uplink",
	9:  "Mixed-load soak",
	10: "Two relays",
}

// scenarioList names the scenarios for -only's help and errors: "1-10", or "1-8, 10" with a gap.
func scenarioList() string {
	nums := slices.Sorted(maps.Keys(scenarioNames))
	var parts []string
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", nums[i], nums[j]))
		} else {
			parts = append(parts, strconv.Itoa(nums[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

func newPlan(o options) (plan, error) {
	p := plan{
		runs:         3,
		bigSize:      gib,
		parallel:     4,
		wrkDuration:  10 * time.Second,
		interactiveN: 300,
		ttfbSamples:  10,
		streams:      1000,
		websockets:   5000,
		wanProfiles:  []wanProfile{wan40, wan80},
		wanSize:      256 * mib,
		wanCap:       30 * time.Second,
		wanSeeks:     5,

		uplinkSamples: 100,
		uplinkSettle:  5 * time.Second,
		uplinkPaths:   []string{"quic", "tcp", "auto"},
		uplinkDirect:  true,
		uplinkLossy:   true,

		soakDuration: 4 * time.Minute,
		soakAfter:    30 * time.Second,

		relaysConns:  []int{1, 2, 3, 4},
		relaysSettle: 2 * time.Second,
	}
	if o.quick {
		p.runs = 1
		p.bigSize = 256 * mib
		p.wrkDuration = 3 * time.Second
		p.interactiveN = 200
		p.ttfbSamples = 10
		p.streams = 200
		p.websockets = 500
		p.wanProfiles = []wanProfile{wan40}
		p.wanSize = 64 * mib
		p.wanCap = 15 * time.Second
		p.wanSeeks = 5
		// The default transport alone, briefly.
		p.uplinkSamples = 20
		p.uplinkSettle = 3 * time.Second
		p.uplinkPaths = []string{"auto"}
		p.uplinkDirect = false
		p.uplinkLossy = false
		p.soakDuration = 40 * time.Second
		p.soakAfter = 10 * time.Second

		// Two relays with one and with four connections each: 2 and 8 sessions.
		p.relaysConns = []int{1, 4}
		p.relaysSettle = time.Second
	}
	if o.runs > 0 {
		p.runs = o.runs
	}
	if o.uplink != "" {
		p.uplinkPaths, p.uplinkDirect, p.uplinkLossy = nil, false, false
		for _, name := range strings.Split(o.uplink, ",") {
			switch name = strings.TrimSpace(name); name {
			case "direct":
				p.uplinkDirect = true
			case "lossy":
				p.uplinkLossy = true
			case "quic", "tcp", "auto":
				p.uplinkPaths = append(p.uplinkPaths, name)
			default:
				return p, fmt.Errorf("-uplink: %q is not a path (direct, quic, tcp, auto, lossy)", name)
			}
		}
	}
	if o.wan != "" {
		p.wanProfiles = nil
		for _, name := range strings.Split(o.wan, ",") {
			i := slices.IndexFunc(allWAN, func(w wanProfile) bool { return w.name == strings.TrimSpace(name) })
			if i < 0 {
				return p, fmt.Errorf("-wan: %q is not a profile (40ms, 80ms-loss)", name)
			}
			p.wanProfiles = append(p.wanProfiles, allWAN[i])
		}
	}
	p.scenarios = map[int]bool{}
	if o.only == "" {
		for i := range scenarioNames {
			p.scenarios[i] = true
		}
		return p, nil
	}
	for _, f := range strings.Split(o.only, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || scenarioNames[n] == "" {
			return p, fmt.Errorf("-only: %q is not a scenario number (%s)", f, scenarioList())
		}
		p.scenarios[n] = true
	}
	return p, nil
}
