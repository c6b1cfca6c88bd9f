package protocol

import (
	"context"
	"net"
	"time"
)

// Stream is one bidirectional byte stream inside a Session.
// Close ends both directions; CloseWrite sends end-of-stream and keeps reading.
type Stream interface {
	net.Conn
	CloseWrite() error
	// Abort ends both directions at once, for a reader that gives up on what
	// it receives (a viewer seeks away from the video that was playing): the
	// peer's writes fail now instead of filling the tunnel with bytes nobody
	// will read, and what this side wrote that the peer has not read yet may
	// be lost. Close delivers what was written.
	Abort()
}

// Session is one multiplexed connection between an agent and a relay.
// Both transports implement it; nothing above this package asks which it has.
type Session interface {
	// OpenStream opens a new stream to the peer.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close ends the session and every stream in it.
	Close() error
	// Done is closed once the session is over.
	Done() <-chan struct{}
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Transport names the transport, for logs and metrics only: "quic" or "tcp".
	Transport() string
	// BytesReceived counts what has arrived from the peer on the session:
	// data flowing proves the peer alive even when its heartbeats wait behind
	// that data on a congested link.
	BytesReceived() uint64
}

// Flow-control and liveness settings shared by both transports.
//
// A stream window caps one stream's throughput at window/RTT: yamux's default
// 256 KiB allows ~20 Mbit/s at 100 ms. 16 MiB per stream allows ~1.3 Gbit/s at
// 100 ms, enough for any home uplink; memory is only used when a reader falls
// behind.
//
// QUIC also caps what a connection's streams hold unread together. Data a
// paused video's viewer does not read waits in the relay and counts against
// that cap; once it is used up, no stream of the tunnel moves, and the whole
// site hangs until a viewer reads. So the connection window is not a flow
// control: it is a memory cap, open from the start (quic-go would otherwise
// grow it only while the reader keeps up), and sixteen full stream windows
// wide. yamux has no such cap at all. Measured with four viewers reading
// 15 MB/s each, a page's p99 was 150–220 ms under the old 64 MiB cap that
// started at 2 MiB, against 11–16 ms with this one; eight paused videos
// stalled every other request.
const (
	StreamWindow        = 16 << 20
	ConnectionWindow    = 16 * StreamWindow
	initialStreamWindow = 1 << 20
	initialConnWindow   = ConnectionWindow
	// KeepAlivePeriod is the yamux ping period. TCP learns of a dead relay
	// process from the kernel; a partition shows within KeepAlivePeriod plus
	// IdleTimeout.
	KeepAlivePeriod = 10 * time.Second
	// QUICKeepAlivePeriod is short because UDP has no kernel-level close: the
	// agent learns of a restarted relay (by its stateless reset) on its next packet.
	QUICKeepAlivePeriod = 2 * time.Second
	IdleTimeout         = 30 * time.Second
	// QUICIdleTimeout declares a silent QUIC session dead.
	QUICIdleTimeout      = 15 * time.Second
	HandshakeTimeout     = 10 * time.Second
	maxConcurrentStreams = 1 << 16
)
