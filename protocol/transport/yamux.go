package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/hashicorp/yamux"
)

// yamuxConfig returns the yamux configuration both sides use, one per
// session: its window budget is the session's own.
func yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 4096
	c.EnableKeepAlive = true
	c.KeepAliveInterval = keepAlivePeriod
	c.ConnectionWriteTimeout = idleTimeout
	// Stream windows start at yamux's 256 KiB (DefaultConfig's
	// InitialStreamWindowSize) and grow to streamWindow while their reader
	// keeps up, within the session's budget: see window.go.
	c.MaxStreamWindowSize = streamWindow
	c.WindowBudget = &windowBudget{limit: connectionWindow}
	c.StreamCloseTimeout = yamuxResetDelay
	c.LogOutput = io.Discard
	return c
}

// yamuxResetDelay is how long after Close a yamux stream is reset if the peer
// has not ended its side by then (yamux's close timer). Long enough for the peer to read what was written
// just before Close (the agent's status for a service it cannot reach), short
// enough that a peer still sending stops soon. Abort resets at once.
const yamuxResetDelay = 500 * time.Millisecond

type yamuxSession struct {
	s    *yamux.Session
	conn net.Conn
	in   *countingConn // what yamux reads from

	// trusted is false on the relay's side until the agent is authenticated:
	// until then a stream drops its receive buffer whenever it has been read
	// empty (see Authenticated).
	trusted atomic.Bool
}

var _ protocol.Session = (*yamuxSession)(nil)

// newYamuxSession runs yamux over conn; client is true on the side that
// dialed. budget, if above zero, caps what the session's stream windows may
// grow to together, in bytes (the default is connectionWindow).
func newYamuxSession(conn net.Conn, client bool, budget int64) (protocol.Session, error) {
	var (
		s    *yamux.Session
		err  error
		conf = yamuxConfig()
	)
	if budget > 0 {
		conf.WindowBudget = &windowBudget{limit: budget}
	}
	in := &countingConn{Conn: conn}
	if client {
		s, err = yamux.Client(in, conf)
	} else {
		// The relay accepts only the control stream (see relayIncomingStreams).
		// Any other the agent opens is reset as it arrives: accepted or not,
		// it could buffer a 256 KiB window. AcceptBacklog stays large: yamux
		// also sizes by it how many streams the relay may have opened that
		// the agent has not acknowledged yet, and at 1 every new stream would
		// wait a round trip for the one before.
		conf.MaxIncomingStreams = relayIncomingStreams
		s, err = yamux.Server(in, conf)
	}
	if err != nil {
		return nil, fmt.Errorf("protocol: start yamux: %w", err)
	}
	ys := &yamuxSession{s: s, conn: conn, in: in}
	ys.trusted.Store(client)
	return ys, nil
}

// DialTCP connects to a relay over TCP+TLS and runs yamux on top. tlsConf must set NextProtos to protocol.ALPN.
func DialTCP(ctx context.Context, addr string, tlsConf *tls.Config) (protocol.Session, error) {
	return DialTCPCongestion(ctx, addr, tlsConf, "")
}

// DialTCPCongestion is DialTCP with the socket's congestion control set to
// cc ("" keeps the system's), such as "bbr", which keeps its rate under
// random loss where Cubic collapses.
func DialTCPCongestion(ctx context.Context, addr string, tlsConf *tls.Config, cc string) (protocol.Session, error) {
	d := net.Dialer{KeepAlive: keepAlivePeriod}
	if cc != "" {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = setCongestion(fd, cc) }); err != nil {
				return err
			}
			return serr
		}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	raw := newBatchConn(c, true)
	tc := tls.Client(raw, withServerName(tlsConf, addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != protocol.ALPN {
		c.Close()
		return nil, fmt.Errorf("protocol: relay at %s negotiated protocol.ALPN %q, want %q", addr, p, protocol.ALPN)
	}
	tb := newTLSBatch(tc, raw)
	s, err := newYamuxSession(tb, true, 0)
	if err != nil {
		tb.Close()
		return nil, err
	}
	return s, nil
}

func (s *yamuxSession) OpenStream(ctx context.Context) (protocol.Stream, error) {
	// yamux opens without a round trip; only the backlog can block, and it is bounded.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.s.OpenStream()
	if err != nil {
		return nil, s.mapErr(err)
	}
	return &yamuxStream{Stream: st, sess: s}, nil
}

func (s *yamuxSession) AcceptStream(ctx context.Context) (protocol.Stream, error) {
	st, err := s.s.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, s.mapErr(err)
	}
	return &yamuxStream{Stream: st, sess: s}, nil
}

func (s *yamuxSession) mapErr(err error) error {
	if errors.Is(err, yamux.ErrSessionShutdown) || s.s.IsClosed() {
		return fmt.Errorf("%w: %w", protocol.ErrSessionClosed, err)
	}
	return err
}

// Authenticated tells the relay's side that the agent is authenticated:
// from now on it reads the socket in tcpBufferSize chunks, and a stream
// keeps its receive buffer between reads. Until then the socket is read one
// TLS record at a time, and a stream read empty drops its buffer: yamux
// sizes it after the frames that come (and doubles it as it fills), and
// would keep what a peer's first frames made it allocate for the session's
// life.
func (s *yamuxSession) Authenticated() {
	s.trusted.Store(true)
	if tb, ok := s.conn.(*tlsBatch); ok {
		tb.raw.bufferReads()
	}
}

func (s *yamuxSession) Close() error          { return s.s.Close() }
func (s *yamuxSession) Done() <-chan struct{} { return s.s.CloseChan() }
func (s *yamuxSession) LocalAddr() net.Addr   { return s.conn.LocalAddr() }
func (s *yamuxSession) RemoteAddr() net.Addr  { return s.conn.RemoteAddr() }
func (s *yamuxSession) Transport() string     { return "tcp" }

type yamuxStream struct {
	*yamux.Stream
	sess   *yamuxSession
	closed atomic.Bool // Close or Abort was called
}

var _ protocol.Stream = (*yamuxStream)(nil)

// CloseWrite sends FIN; reading goes on until the peer's FIN, however long that takes.
func (s *yamuxStream) CloseWrite() error { return s.Stream.CloseWrite() }

// Close sends FIN, has yamux reset the stream after yamuxResetDelay unless the
// peer ends its side first, and unblocks local reads at once. After CloseWrite,
// yamux sends nothing more: the peer learns of the Close only when it ends its side.
func (s *yamuxStream) Close() error {
	s.markClosed()
	return s.Stream.Close()
}

// Abort sends FIN and resets the stream right after it: the peer's writes
// fail as soon as the reset arrives. yamux has no stop-sending signal, so a
// reset is the only way to stop them, and it also drops what the peer had
// not read yet.
func (s *yamuxStream) Abort() {
	s.markClosed()
	_ = s.Stream.Close()
	_ = s.Stream.Reset()
}

// markClosed fails local reads at once, before a reset can end a waiting one
// as if the stream had ended.
func (s *yamuxStream) markClosed() {
	s.closed.Store(true)
	s.Stream.SetReadDeadline(time.Now())
}

// Read reports a read that Close or Abort cut short as net.ErrClosed, as
// net.Conn's Read does, rather than as yamux's timeout or as the end of the
// stream: a reader must not take an answer cut short for a whole one. It
// fails after Close too, where yamux would still hand over what it had
// buffered.
func (s *yamuxStream) Read(b []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.Stream.Read(b)
	if !s.sess.trusted.Load() {
		s.Stream.Shrink()
	}
	if err != nil && s.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (s *yamuxSession) BytesReceived() uint64 { return s.in.n.Load() }

// windowBudget is what the stream windows of one yamux session may grow
// into together, as QUIC's connection window caps a QUIC session. A stream
// it denies keeps the window it has and goes on at that pace; unlike a full
// QUIC connection window, it stalls no other stream.
type windowBudget struct {
	limit int64
	used  atomic.Int64
}

var _ yamux.WindowBudget = (*windowBudget)(nil)

func (b *windowBudget) Reserve(n int) bool {
	for {
		used := b.used.Load()
		if used+int64(n) > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+int64(n)) {
			return true
		}
	}
}

func (b *windowBudget) Release(n int) { b.used.Add(-int64(n)) }

// countingConn counts the bytes yamux reads from the connection.
type countingConn struct {
	net.Conn
	n atomic.Uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(uint64(n))
	return n, err
}
