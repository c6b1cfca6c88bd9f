package protocol

import "time"

// PathDelay is what a session measures of its path's round trip while it
// sends: the agent keeps its own bulk data from queueing on the path by it.
type PathDelay struct {
	// RTT is the smoothed round-trip time now; above MinRTT it is the time
	// a packet sent now waits in queues on the way.
	RTT time.Duration
	// MinRTT is the least round trip seen: the path with empty queues.
	MinRTT time.Duration
	// Delivered counts the bytes the peer has received so far (acknowledged
	// on TCP; sent and not lost on QUIC), for a delivery rate.
	Delivered uint64
}

// PathDelayer is a session that reports PathDelay: both transports do on
// Linux, QUIC everywhere.
type PathDelayer interface {
	PathDelay() PathDelay
}
