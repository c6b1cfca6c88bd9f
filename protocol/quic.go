package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/quic-go/quic-go"
)

// Application error codes on QUIC connections and streams.
const (
	quicCodeNoError   quic.ApplicationErrorCode = 0
	quicStreamAborted quic.StreamErrorCode      = 1
)

// QUICConfig returns the quic-go configuration both sides use.
func QUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           HandshakeTimeout,
		MaxIdleTimeout:                 QUICIdleTimeout,
		KeepAlivePeriod:                QUICKeepAlivePeriod,
		InitialStreamReceiveWindow:     initialStreamWindow,
		MaxStreamReceiveWindow:         StreamWindow,
		InitialConnectionReceiveWindow: initialConnWindow,
		MaxConnectionReceiveWindow:     ConnectionWindow,
		MaxIncomingStreams:             maxConcurrentStreams,
		MaxIncomingUniStreams:          -1,
	}
}

type quicSession struct {
	conn *quic.Conn
}

var _ Session = (*quicSession)(nil)

// NewQUICSession wraps an established QUIC connection.
func NewQUICSession(conn *quic.Conn) Session { return &quicSession{conn: conn} }

// DialQUIC connects to a relay over QUIC. tlsConf must set NextProtos to ALPN.
func DialQUIC(ctx context.Context, addr string, tlsConf *tls.Config) (Session, error) {
	conn, err := quic.DialAddr(ctx, addr, tlsConf, QUICConfig())
	if err != nil {
		return nil, err
	}
	return &quicSession{conn: conn}, nil
}

func (s *quicSession) OpenStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, s.mapErr(err)
	}
	return &quicStream{Stream: st, conn: s.conn}, nil
}

func (s *quicSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.AcceptStream(ctx)
	if err != nil {
		return nil, s.mapErr(err)
	}
	return &quicStream{Stream: st, conn: s.conn}, nil
}

func (s *quicSession) mapErr(err error) error {
	if s.conn.Context().Err() != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrSessionClosed, err)
	}
	return err
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
	conn *quic.Conn
}

var _ Stream = (*quicStream)(nil)

func (s *quicStream) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// CloseWrite sends FIN; reading goes on.
func (s *quicStream) CloseWrite() error { return s.Stream.Close() }

// Close stops reading (the peer's writes fail at once) and sends FIN after pending data.
func (s *quicStream) Close() error {
	s.Stream.CancelRead(quicStreamAborted)
	return s.Stream.Close()
}
