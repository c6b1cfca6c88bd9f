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
// behind. The connection window (QUIC) is sized for several such streams.
const (
	StreamWindow        = 16 << 20
	ConnectionWindow    = 64 << 20
	initialStreamWindow = 1 << 20
	initialConnWindow   = 2 << 20
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
