package protocol

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// YamuxConfig returns the yamux configuration both sides use.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 4096
	c.EnableKeepAlive = true
	c.KeepAliveInterval = KeepAlivePeriod
	c.ConnectionWriteTimeout = IdleTimeout
	c.MaxStreamWindowSize = StreamWindow
	// yamux has no stream reset in its API: a stream closed while the peer still
	// sends is reset after this delay. Short, so that a browser leaving a live
	// transcode stops the transcode at home at once.
	c.StreamCloseTimeout = 500 * time.Millisecond
	c.LogOutput = io.Discard
	return c
}

type yamuxSession struct {
	s    *yamux.Session
	conn net.Conn
}

var _ Session = (*yamuxSession)(nil)

// NewYamuxSession runs yamux over conn; client is true on the side that dialed.
func NewYamuxSession(conn net.Conn, client bool) (Session, error) {
	var (
		s   *yamux.Session
		err error
	)
	if client {
		s, err = yamux.Client(conn, YamuxConfig())
	} else {
		s, err = yamux.Server(conn, YamuxConfig())
	}
	if err != nil {
		return nil, fmt.Errorf("protocol: start yamux: %w", err)
	}
	return &yamuxSession{s: s, conn: conn}, nil
}

// DialTCP connects to a relay over TCP+TLS and runs yamux on top. tlsConf must set NextProtos to ALPN.
func DialTCP(ctx context.Context, addr string, tlsConf *tls.Config) (Session, error) {
	d := tls.Dialer{Config: tlsConf, NetDialer: &net.Dialer{KeepAlive: KeepAlivePeriod}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if p := tc.ConnectionState().NegotiatedProtocol; p != ALPN {
		c.Close()
		return nil, fmt.Errorf("protocol: relay at %s negotiated ALPN %q, want %q", addr, p, ALPN)
	}
	return NewYamuxSession(tc, true)
}

func (s *yamuxSession) OpenStream(ctx context.Context) (Stream, error) {
	// yamux opens without a round trip; only the backlog can block, and it is bounded.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.s.OpenStream()
	if err != nil {
		return nil, s.mapErr(err)
	}
	return yamuxStream{st}, nil
}

func (s *yamuxSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.s.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, s.mapErr(err)
	}
	return yamuxStream{st}, nil
}

func (s *yamuxSession) mapErr(err error) error {
	if errors.Is(err, yamux.ErrSessionShutdown) || s.s.IsClosed() {
		return fmt.Errorf("%w: %w", ErrSessionClosed, err)
	}
	return err
}

func (s *yamuxSession) Close() error          { return s.s.Close() }
func (s *yamuxSession) Done() <-chan struct{} { return s.s.CloseChan() }
func (s *yamuxSession) LocalAddr() net.Addr   { return s.conn.LocalAddr() }
func (s *yamuxSession) RemoteAddr() net.Addr  { return s.conn.RemoteAddr() }
func (s *yamuxSession) Transport() string     { return "tcp" }

type yamuxStream struct{ *yamux.Stream }

var _ Stream = yamuxStream{}

// CloseWrite sends FIN; reading goes on until the peer's FIN (or StreamCloseTimeout).
func (s yamuxStream) CloseWrite() error { return s.Stream.Close() }
