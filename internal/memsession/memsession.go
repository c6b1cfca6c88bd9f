// Package memsession is an in-memory pair of protocol.Sessions for unit
// tests that run under testing/synctest, where real sockets cannot: every
// stream is a pair of net.Pipes made inside the test's bubble, so the bubble's
// clock drives their deadlines and a blocked read or write is durably blocked.
// Integration tests use the real transports on loopback.
package memsession

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// Session is one end of a pair made by Pair.
type Session struct {
	link     *link
	peer     *Session
	accept   chan *stream // opened by the peer, not accepted yet
	received atomic.Uint64
}

// link is what the two ends share: closing either ends both, as a dropped
// connection does.
type link struct {
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex
	streams   []*stream // guarded by mu; closed with the link
}

var _ protocol.Session = (*Session)(nil)

// Pair returns two connected sessions: what one opens, the other accepts.
func Pair() (a, b *Session) {
	l := &link{done: make(chan struct{})}
	a = &Session{link: l, accept: make(chan *stream, 64)}
	b = &Session{link: l, accept: make(chan *stream, 64)}
	a.peer, b.peer = b, a
	return a, b
}

// OpenStream opens a stream that the peer's AcceptStream returns.
func (s *Session) OpenStream(ctx context.Context) (protocol.Stream, error) {
	ab, ba := pipe()
	local := &stream{r: ba.r, w: ab.w, sess: s}
	remote := &stream{r: ab.r, w: ba.w, sess: s.peer}
	s.link.mu.Lock()
	select {
	case <-s.link.done:
		s.link.mu.Unlock()
		return nil, protocol.ErrSessionClosed
	default:
	}
	s.link.streams = append(s.link.streams, local, remote)
	s.link.mu.Unlock()
	select {
	case s.peer.accept <- remote:
		return local, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.link.done:
		return nil, protocol.ErrSessionClosed
	}
}

// AcceptStream waits for a stream the peer opens.
func (s *Session) AcceptStream(ctx context.Context) (protocol.Stream, error) {
	select {
	case st := <-s.accept:
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.link.done:
		return nil, protocol.ErrSessionClosed
	}
}

// Close ends both ends of the pair and every stream in them.
func (s *Session) Close() error {
	s.link.closeOnce.Do(func() {
		s.link.mu.Lock()
		close(s.link.done)
		streams := s.link.streams
		s.link.streams = nil
		s.link.mu.Unlock()
		for _, st := range streams {
			st.Close()
		}
	})
	return nil
}

func (s *Session) Done() <-chan struct{} { return s.link.done }
func (s *Session) LocalAddr() net.Addr   { return addr("local") }
func (s *Session) RemoteAddr() net.Addr  { return addr("remote") }
func (s *Session) Transport() string     { return "mem" }

// BytesReceived counts what this end has read on its streams.
func (s *Session) BytesReceived() uint64 { return s.received.Load() }

type addr string

func (a addr) Network() string { return "mem" }
func (a addr) String() string  { return string(a) }

// half is one direction of a stream.
type half struct{ r, w net.Conn }

func pipe() (ab, ba half) {
	r1, w1 := net.Pipe()
	r2, w2 := net.Pipe()
	return half{r: r1, w: w1}, half{r: r2, w: w2}
}

// stream reads from one net.Pipe and writes to another, so that each
// direction closes on its own.
type stream struct {
	r, w net.Conn
	sess *Session
}

var _ protocol.Stream = (*stream)(nil)

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.sess.received.Add(uint64(n))
	return n, err
}

func (s *stream) Write(p []byte) (int, error) { return s.w.Write(p) }

// CloseWrite ends this side's direction: the peer reads EOF, and can still write.
func (s *stream) CloseWrite() error { return s.w.Close() }

func (s *stream) Close() error {
	s.w.Close()
	return s.r.Close()
}

func (s *stream) Abort() { _ = s.Close() }

func (s *stream) LocalAddr() net.Addr  { return addr("local") }
func (s *stream) RemoteAddr() net.Addr { return addr("remote") }

func (s *stream) SetDeadline(t time.Time) error {
	return errors.Join(s.r.SetReadDeadline(t), s.w.SetWriteDeadline(t))
}
func (s *stream) SetReadDeadline(t time.Time) error  { return s.r.SetReadDeadline(t) }
func (s *stream) SetWriteDeadline(t time.Time) error { return s.w.SetWriteDeadline(t) }
