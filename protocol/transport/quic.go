package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/quic-go/quic-go"
)

// Application error codes on QUIC connections and streams.
const (
	quicCodeNoError   quic.ApplicationErrorCode = 0
	quicStreamAborted quic.StreamErrorCode      = 1
)

// quicConfig returns the quic-go configuration both sides use.
func quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           protocol.HandshakeTimeout,
		MaxIdleTimeout:                 quicIdleTimeout,
		KeepAlivePeriod:                quicKeepAlivePeriod,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         streamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     connectionWindow,
		MaxIncomingStreams:             maxConcurrentStreams,
		MaxIncomingUniStreams:          -1,
	}
}

// relayIncomingStreams caps the streams an agent may have open to the relay
// at once: the control stream only. The relay opens the data streams.
const relayIncomingStreams = 1

// relayQUICConfig is quicConfig for the relay's side. It accepts only the
// control stream, with a window that holds one Hello: whatever a peer sends
// before it is authenticated, even out of order, the relay holds no more
// than that (see relayStreamWindow).
func relayQUICConfig() *quic.Config {
	c := quicConfig()
	c.MaxIncomingStreams = relayIncomingStreams
	c.InitialStreamReceiveWindow = relayStreamWindow
	return c
}

type quicSession struct {
	conn *quic.Conn
}

var _ protocol.Session = (*quicSession)(nil)

func newQUICSession(conn *quic.Conn) *quicSession { return &quicSession{conn: conn} }

func (s *quicSession) BytesReceived() uint64 { return s.conn.ConnectionStats().BytesReceived }

// withServerName is tlsConf, naming the host of addr as the server when it
// names none, so that the relay's certificate is checked against the name
// the agent was given rather than the address it resolved to.
func withServerName(tlsConf *tls.Config, addr string) *tls.Config {
	if tlsConf.ServerName != "" {
		return tlsConf
	}
	conf := tlsConf.Clone()
	conf.ServerName, _, _ = net.SplitHostPort(addr)
	return conf
}

// DialQUIC connects to a relay over QUIC. tlsConf must set NextProtos to protocol.ALPN.
func DialQUIC(ctx context.Context, addr string, tlsConf *tls.Config) (protocol.Session, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: withGRO(udp)}
	closeTransport := func() { _ = errors.Join(tr.Close(), udp.Close()) }
	conn, err := tr.Dial(ctx, raddr, withServerName(tlsConf, addr), quicConfig())
	if err != nil {
		closeTransport()
		return nil, err
	}
	// The socket is this connection's alone: it goes when the connection does.
	context.AfterFunc(conn.Context(), closeTransport)
	return newQUICSession(conn), nil
}

func (s *quicSession) OpenStream(ctx context.Context) (protocol.Stream, error) {
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, mapQUICErr(ctx, err)
	}
	return &quicStream{Stream: st, sess: s}, nil
}

func (s *quicSession) AcceptStream(ctx context.Context) (protocol.Stream, error) {
	st, err := s.conn.AcceptStream(ctx)
	if err != nil {
		return nil, mapQUICErr(ctx, err)
	}
	return &quicStream{Stream: st, sess: s}, nil
}

// mapQUICErr marks the errors that mean the connection is over. quic-go fails
// OpenStreamSync and AcceptStream only with the caller's context error or with
// the connection's close error; it wakes blocked callers with the latter before
// it cancels conn.Context, so that context cannot be what tells them apart.
func mapQUICErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return err
	}
	return fmt.Errorf("%w: %w", protocol.ErrSessionClosed, err)
}

func (s *quicSession) Close() error {
	return s.conn.CloseWithError(quicCodeNoError, "closed")
}

func (s *quicSession) Done() <-chan struct{}    { return s.conn.Context().Done() }
func (s *quicSession) LocalAddr() net.Addr      { return s.conn.LocalAddr() }
func (s *quicSession) RemoteAddr() net.Addr     { return s.conn.RemoteAddr() }
func (s *quicSession) Transport() string        { return "quic" }
func (s *quicSession) TLS() tls.ConnectionState { return s.conn.ConnectionState().TLS }

type quicStream struct {
	*quic.Stream
	sess *quicSession

	mu      sync.Mutex
	closed  bool // Close was called: later writes fail
	writers int  // Writes in progress
}

var _ protocol.Stream = (*quicStream)(nil)

func (s *quicStream) LocalAddr() net.Addr  { return s.sess.conn.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.sess.conn.RemoteAddr() }

// CloseWrite sends FIN; reading goes on.
func (s *quicStream) CloseWrite() error { return s.Stream.Close() }

// Abort is Close: a QUIC stream can stop the peer's writes (STOP_SENDING) and
// still deliver its own.
func (s *quicStream) Abort() { _ = s.Close() }

func (s *quicStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, net.ErrClosed
	}
	s.writers++
	s.mu.Unlock()
	n, err := s.Stream.Write(p)
	s.mu.Lock()
	s.writers--
	s.mu.Unlock()
	return n, err
}

// Close stops reading (the peer's writes fail at once) and sends FIN after
// pending data. A Write still in progress in another goroutine (one waiting
// for the peer to read, such as a paused video's) fails at once and the
// stream is reset: quic-go's Close would leave that Write waiting for the
// peer, and for good once the connection had ended.
func (s *quicStream) Close() error {
	s.Stream.CancelRead(quicStreamAborted)
	s.mu.Lock()
	s.closed = true
	busy := s.writers > 0
	s.mu.Unlock()
	if busy {
		s.Stream.CancelWrite(quicStreamAborted)
		return nil
	}
	// quic-go's only error here says that the peer had already stopped reading;
	// the stream is closed either way, as after the usual exchange where the peer
	// closes first.
	s.Stream.Close()
	return nil
}
