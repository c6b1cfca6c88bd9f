package agent

import (
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Keeping the home uplink's queue short (bulk streams only).
//
// A video sent as fast as the tunnel's congestion control allows fills the
// home router's queue: Cubic (QUIC's, and most kernels' TCP) grows its
// window until the queue overflows, and over TCP the tunnel socket queues
// up to a megabyte more. A page's answer then waits behind all of it: over
// a 50 Mbit/s uplink whose router queues 400 packets, 96 ms in the router
// alone. The agent sends the video, so it paces its bulk streams instead:
// it watches the tunnel's round trip and keeps it within queueTarget of the
// path's minimum, raising the bulk rate slowly while the queue is shorter,
// lowering it as the queue grows. The link stays busy, since a short
// standing queue is still a queue, and a small answer finds the way nearly
// clear.
//
// Like LEDBAT it steers by the queueing delay; unlike LEDBAT it also
// steers by how much the queue grew over the last round trip. The queue
// shows in the round trip only a round trip later, and a rate steered by
// the queue's length alone overshoots: on an emulated 50 Mbit/s, 40 ms
// line it swung between 30 and 65 Mbit/s, and the round trip between 42
// and 77 ms, five times a second.
const (
	// queueTarget is the queueing delay bulk streams may cause: small
	// against the uplink's 40–100 ms of router queue, large enough for
	// the round trip's own jitter not to read as a queue.
	queueTarget = 12 * time.Millisecond
	// The bulk rate changes by up to maxStep per round trip: by pGain per
	// queueTarget the queue is below the target, less dGain per
	// queueTarget it grew over the last round trip. The growth term damps
	// the controller: a queue that grows means the rate is above the
	// link's already, before it is above the target.
	pGain   = 0.05
	dGain   = 0.5
	maxStep = 0.05
	// maxCut is the largest cut per round trip, once the queue is past
	// twice the target: the link got slower (another device of the home
	// took its share), and the queue must drain in a few round trips.
	maxCut = 0.1
	// queueSamples is how many of the last samples the queue is the
	// least of: a round trip that one late wake-up or a burst of acks
	// made longer is not a queue, and a queue lasts.
	queueSamples = 3
	// minBulkRate is the least the bulk streams are given (bytes/s).
	minBulkRate = 128 << 10
	// standingFor is how long the queue may stay above twice the target,
	// and not shrink, before the controller takes it for someone else's:
	// a queue that cuts do not drain is not the bulk streams' own (a
	// backup running on another machine of the home), and yielding to it
	// would starve the video. The controller then counts it as part of the
	// path, until the round trip falls below it again.
	standingFor = 2 * time.Second
	// deliveryWindow is how far back the best delivery rate is taken from.
	deliveryWindow = time.Second
)

// rateController turns a session's round-trip samples into a rate for its
// bulk streams. Rate 0 means unpaced: until the path first shows a queue,
// and whenever the rate is far above what the path delivers, bulk streams
// go as fast as the transport takes them. Not safe for concurrent use: the
// scheduler's loop owns it.
type rateController struct {
	rate float64 // bytes per second; 0 unpaced

	above     time.Time     // since when the queue has been above twice the target; zero when not
	aboveQ    time.Duration // the queue then
	aboveRate float64       // the rate then
	aboveMin  time.Duration // the least round trip in the second half of the time above
	floor     time.Duration // someone else's standing queue counts as the path's minimum; 0 when none

	prev time.Time                   // the sample before this one
	raw  [queueSamples]time.Duration // the last samples' queueing delays, unfiltered
	hist [256]delivery               // ring of samples, oldest overwritten: deliveryWindow and more at the loop's tick
	n    int                         // samples taken
}

// delivery is one sample of the path.
type delivery struct {
	at    time.Time
	bytes uint64        // delivered so far
	rate  float64       // delivered over the round trip before it
	queue time.Duration // the queueing delay then
}

// observe takes one sample of the path and returns the new bulk rate.
func (c *rateController) observe(now time.Time, d protocol.PathDelay) float64 {
	if d.RTT <= 0 || d.MinRTT <= 0 {
		return c.rate // nothing measured yet
	}
	if c.floor > 0 && d.RTT < c.floor-queueTarget {
		c.floor = 0 // the other queue is gone
	}
	q := c.queue(d)
	recent, best, before := c.record(now, d, q)
	dt := now.Sub(c.prev)
	c.prev = now
	if c.foreign(now, d, q) {
		return c.rate
	}
	if c.rate == 0 {
		// Unpaced until the path shows a queue: on a path that never
		// queues (a LAN, loopback) pacing would only cost wake-ups.
		if q > queueTarget {
			c.rate = recent // 0 until a round trip has been measured
		}
		return c.rate
	}
	step := pGain*float64(queueTarget-q)/float64(queueTarget) - dGain*float64(q-before)/float64(queueTarget)
	lowest := -maxStep
	if q > 2*queueTarget {
		lowest = -maxCut
	}
	step = min(max(step, lowest), maxStep)
	c.rate *= 1 + step*min(1, float64(dt)/float64(d.RTT))
	// Twice what the path delivers is no limit: the streams are held back
	// by the service or the viewer, or the path is faster than the rate
	// ever was. Unpaced, they go as the transport takes them.
	if limit := 2 * best; c.rate > limit {
		c.rate = 0
		return 0
	}
	c.rate = max(c.rate, minBulkRate)
	return c.rate
}

// queue is the queueing delay d shows: over the path's minimum (or over
// someone else's standing queue), the least of the last queueSamples.
func (c *rateController) queue(d protocol.PathDelay) time.Duration {
	base := max(d.MinRTT, c.floor)
	i := c.n % queueSamples
	c.raw[i] = max(d.RTT-base, 0)
	q := c.raw[i]
	for _, r := range c.raw[:min(c.n+1, queueSamples)] {
		q = min(q, r)
	}
	return q
}

// foreign watches for a queue that slowing down does not drain, and
// reports when it has just taken one for someone else's.
func (c *rateController) foreign(now time.Time, d protocol.PathDelay, q time.Duration) bool {
	switch {
	case q <= 2*queueTarget:
		c.above = time.Time{}
	case c.above.IsZero():
		c.above, c.aboveQ, c.aboveRate, c.aboveMin = now, q, c.rate, 0
	case now.Sub(c.above) >= standingFor && q >= c.aboveQ-queueTarget/2:
		// Its least round trip since the round trip settled had the least
		// of the bulk streams' own queue in it.
		c.floor, c.above = min(c.aboveMin, d.RTT), time.Time{}
		c.rate = max(c.rate, c.aboveRate)
		return true
	case now.Sub(c.above) >= standingFor/2:
		if c.aboveMin == 0 || d.RTT < c.aboveMin {
			c.aboveMin = d.RTT
		}
	}
	return false
}

// record keeps the sample d, with queueing delay q, and returns the
// delivery rate over the last round trip, the best such rate within
// deliveryWindow, and the queueing delay a round trip ago.
func (c *rateController) record(now time.Time, d protocol.PathDelay, q time.Duration) (recent, best float64, before time.Duration) {
	span := max(d.RTT, 20*time.Millisecond)
	before = q
	found := false
	for i := 1; i <= min(c.n, len(c.hist)); i++ {
		s := c.hist[(c.n-i)%len(c.hist)]
		age := now.Sub(s.at)
		if age <= deliveryWindow {
			best = max(best, s.rate)
		}
		if !found && age >= span {
			found = true
			before = s.queue
			if d.Delivered >= s.bytes {
				recent = float64(d.Delivered-s.bytes) / age.Seconds()
			}
		}
		if found && age > deliveryWindow {
			break
		}
	}
	best = max(best, recent)
	c.hist[c.n%len(c.hist)] = delivery{at: now, bytes: d.Delivered, rate: recent, queue: q}
	c.n++
	return recent, best, before
}
