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

// PathStats is what a session knows of its network path.
type PathStats struct {
	// PacketsSent counts every packet sent, retransmissions included.
	PacketsSent uint64
	// PacketsLost counts the packets declared lost (it can fall back when a
	// packet declared lost arrives after all).
	PacketsLost uint64
	SmoothedRTT time.Duration
}

// PathStatser is a session that reports PathStats: QUIC sessions do; on the
// TCP transport the kernel keeps such counts to itself.
type PathStatser interface {
	PathStats() PathStats
}

// HandshakeTimeout bounds a transport's handshake and the Hello/Welcome
// exchange on the control stream; keepalives carry liveness after it.
const HandshakeTimeout = 10 * time.Second

// GuardHandshake bounds the Hello/Welcome exchange on a control stream: it
// sets HandshakeTimeout as the stream's deadline, and closes the stream as
// soon as ctx ends (the agent or relay stopping ends the handshake at once,
// not at the deadline). The function it returns ends the guard: it waits
// for a close under way, and clears the deadline, since keepalives carry
// liveness once the handshake is over.
func GuardHandshake(ctx context.Context, ctrl Stream) (done func()) {
	_ = ctrl.SetDeadline(time.Now().Add(HandshakeTimeout))
	closed := make(chan struct{})
	stopClose := context.AfterFunc(ctx, func() {
		defer close(closed)
		ctrl.Close()
	})
	return func() {
		if !stopClose() {
			<-closed
		}
		_ = ctrl.SetDeadline(time.Time{})
	}
}
