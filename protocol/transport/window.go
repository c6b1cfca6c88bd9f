package transport

import (
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Flow-control and liveness settings shared by both transports.
//
// A stream window caps one stream's throughput at window/RTT: yamux's default
// 256 KiB allows ~20 Mbit/s at 100 ms. 16 MiB per stream allows ~1.3 Gbit/s at
// 100 ms, enough for any home uplink; memory is only used when a reader falls
// behind. Neither transport grants it up front: a stream's window starts small
// (QUIC 1 MiB, on the relay's side relayStreamWindow; yamux 256 KiB) and
// doubles only while its reader consumes a
// window within a few round trips, so a visitor who asks for a video and
// reads nothing holds the relay to the initial window, not 16 MiB. A yamux
// window also grows only while its reader waits for data, and halves again
// while data waits for its reader (third_party/yamux/README.md): a download
// whose visitor reads slower than the agent sends holds a small window, not
// the largest it once reached.
//
// QUIC also caps what a connection's streams hold unread together. Data a
// paused video's viewer does not read waits in the relay and counts against
// that cap; once it is used up, no stream of the tunnel moves, and the whole
// site hangs until a viewer reads. So the connection window is not a flow
// control: it is a memory cap, open from the start (quic-go would otherwise
// grow it only while the reader keeps up), and sixteen full stream windows
// wide. Measured with four viewers reading 15 MB/s each, a page's p99 was
// 150–220 ms under the old 64 MiB cap that started at 2 MiB, against 11–16 ms
// with this one; eight paused videos stalled every other request.
//
// yamux has no connection window. Each yamux session instead has a budget of
// the same size that its stream windows grow into (windowBudget); a stream
// the budget denies keeps the window it has, so it slows down without
// stalling the others.
const (
	streamWindow        = 16 << 20
	connectionWindow    = 16 * streamWindow
	initialStreamWindow = 1 << 20
	initialConnWindow   = connectionWindow
	// keepAlivePeriod is the yamux ping period. TCP learns of a dead relay
	// process from the kernel; a partition shows within keepAlivePeriod plus
	// idleTimeout.
	keepAlivePeriod = 10 * time.Second
	// quicKeepAlivePeriod is short because UDP has no kernel-level close: the
	// agent learns of a restarted relay (by its stateless reset) on its next packet.
	quicKeepAlivePeriod = 2 * time.Second
	// idleTimeout bounds a yamux write the peer does not take.
	idleTimeout = 30 * time.Second
	// quicIdleTimeout declares a silent QUIC session dead.
	quicIdleTimeout      = 15 * time.Second
	maxConcurrentStreams = 1 << 16
)

// What the relay grants a peer before it is authenticated must not be what
// the fastest agent needs: a peer with no token could otherwise make it hold
// megabytes per connection for the whole handshake timeout. On both
// transports the agent may have one stream open, its control stream
// (relayIncomingStreams); any other is reset as it arrives.
//
// Over QUIC that stream's window holds one Hello, so no data, even sent out of
// order, parks more than that. quic-go has one initial window for the streams
// either side opens, so the relay's data streams start at that window too;
// auto-tuning doubles it each time the relay reads half of it within a few
// round trips, so a stream whose reader keeps up reaches 1 MiB a few round
// trips later than with a 1 MiB start. The connection's window stays open
// (see connectionWindow): with one small stream, a peer cannot fill it before
// it is authenticated.
//
// Over TCP, yamux fixes a new stream's window at 256 KiB, and the relay reads
// the control stream as it arrives. Until the agent is authenticated the relay
// reads the socket one TLS record at a time, and drops a stream's receive
// buffer whenever it is read empty (see yamuxSession.Authenticated).
const relayStreamWindow = protocol.MaxMessageSize + 4<<10 // a largest Hello with its frame header, and room
