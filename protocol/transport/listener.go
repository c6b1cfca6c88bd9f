package transport

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/quic-go/quic-go"
)

// Listener accepts agent sessions on one port number: QUIC on UDP and
// TLS+yamux on TCP.
type Listener struct {
	tcp  net.Listener
	udp  net.PacketConn
	tr   *quic.Transport
	ql   *quic.Listener
	tls  *tls.Config
	log  *slog.Logger
	out  chan protocol.Session
	done chan struct{}
	wg   sync.WaitGroup

	ctx    context.Context // cancelled by Close, ends TLS handshakes in progress
	cancel context.CancelFunc

	closeOnce sync.Once

	// The UDP transport carries every QUIC session delivered, so it is closed
	// only once Close was called and the last of them is over; closing it sooner
	// would drop them without a word to their agents.
	mu       sync.Mutex
	quicLive int  // guarded by mu: QUIC sessions accepted and not yet over
	closed   bool // guarded by mu: Close was called
}

// Listen opens the tunnel listener. tlsConf must carry the relay's certificate;
// its NextProtos is set to protocol.ALPN. With port 0, one free port number is picked
// for both UDP and TCP.
func Listen(addr string, tlsConf *tls.Config, log *slog.Logger) (*Listener, error) {
	return ListenConfig{TLS: tlsConf, Log: log}.Listen(addr)
}

// ListenConfig holds the options of a tunnel listener.
type ListenConfig struct {
	TLS *tls.Config
	Log *slog.Logger
	// ResetSeed, when set, derives the QUIC stateless reset key. A relay that
	// keeps it across restarts answers an agent's packets for a connection it
	// lost with a reset, so the agent reconnects at once instead of waiting
	// for its idle timeout.
	ResetSeed []byte
}

// Listen opens the tunnel listener on addr.
func (lc ListenConfig) Listen(addr string) (*Listener, error) {
	tlsConf, log := lc.TLS, lc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{protocol.ALPN}
	tlsConf.MinVersion = tls.VersionTLS13

	tcp, udp, err := ListenSamePort(addr)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: withGRO(udp)}
	if len(lc.ResetSeed) > 0 {
		k := quic.StatelessResetKey(sha256.Sum256(append([]byte("burrow stateless reset\x00"), lc.ResetSeed...)))
		tr.StatelessResetKey = &k
	}
	ql, err := tr.Listen(tlsConf, relayQUICConfig())
	if err != nil {
		tcp.Close()
		udp.Close()
		return nil, fmt.Errorf("protocol: listen quic on %s: %w", udp.LocalAddr(), err)
	}
	l := &Listener{
		tcp: tcp, udp: udp, tr: tr, ql: ql, tls: tlsConf, log: log,
		out:  make(chan protocol.Session),
		done: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(2)
	go l.acceptQUIC()
	go l.acceptTCP()
	return l, nil
}

// ListenSamePort binds TCP and UDP on one port number, as the tunnel and the
// public HTTPS side (HTTP/3) need. With port 0, one free number is picked for both.
func ListenSamePort(addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("protocol: tunnel address %q: %w", addr, err)
	}
	for attempt := 0; ; attempt++ {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("protocol: listen tcp %s: %w", addr, err)
		}
		p := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, p))
		if err == nil {
			return tcp, udp, nil
		}
		tcp.Close()
		if port != "0" || attempt >= 10 {
			return nil, nil, fmt.Errorf("protocol: listen udp %s: %w", net.JoinHostPort(host, p), err)
		}
	}
}

// Addr is the TCP address; the UDP port number is the same.
func (l *Listener) Addr() net.Addr { return l.tcp.Addr() }

// Accept waits for the next authenticated-transport session (the Burrow
// handshake on its control stream is the caller's job).
func (l *Listener) Accept(ctx context.Context) (protocol.Session, error) {
	select {
	case s := <-l.out:
		return s, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *Listener) deliver(s protocol.Session) {
	select {
	case l.out <- s:
	case <-l.done:
		s.Close()
	}
}

func (l *Listener) acceptQUIC() {
	defer l.wg.Done()
	for {
		c, err := l.ql.Accept(context.Background())
		if err != nil {
			return
		}
		l.mu.Lock()
		l.quicLive++
		l.mu.Unlock()
		context.AfterFunc(c.Context(), l.quicEnded)
		l.deliver(newQUICSession(c))
	}
}

func (l *Listener) acceptTCP() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("tunnel accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		l.wg.Add(1)
		go l.handshakeTCP(c)
	}
}

func (l *Listener) handshakeTCP(c net.Conn) {
	defer l.wg.Done()
	raw := newBatchConn(c)
	tc := tls.Server(raw, l.tls)
	ctx, cancel := context.WithTimeout(l.ctx, protocol.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.log.Debug("tunnel tls handshake failed", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != protocol.ALPN {
		l.log.Debug("tunnel client without burrow protocol.ALPN", "remote", c.RemoteAddr(), "alpn", p)
		c.Close()
		return
	}
	tb := newTLSBatch(tc, raw)
	s, err := newYamuxSession(tb, false)
	if err != nil {
		tb.Close()
		return
	}
	l.deliver(s)
}

// Close stops accepting and waits for the accept goroutines. Sessions already
// delivered are the caller's to close, and go on working until then; the UDP
// socket stays open until the last QUIC one is over.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		l.cancel()
		err = errors.Join(l.ql.Close(), l.tcp.Close())
		l.wg.Wait()
		l.mu.Lock()
		l.closed = true
		last := l.quicLive == 0
		l.mu.Unlock()
		if last {
			err = errors.Join(err, l.closeUDP())
		}
	})
	return err
}

// quicEnded runs when a QUIC session accepted by the listener is over.
func (l *Listener) quicEnded() {
	l.mu.Lock()
	l.quicLive--
	last := l.closed && l.quicLive == 0
	l.mu.Unlock()
	if last {
		if err := l.closeUDP(); err != nil {
			l.log.Warn("closing the tunnel's UDP socket", "err", err)
		}
	}
}

func (l *Listener) closeUDP() error { return errors.Join(l.tr.Close(), l.udp.Close()) }
