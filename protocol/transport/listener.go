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

	"github.com/burrow-tunnel/burrow/internal/logthrottle"
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

	limit         *handshakeLimiter     // nil: no limit
	perMinute     int                   // the limit, for the log
	sessionMemory int64                 // ListenConfig.SessionMemory
	refusals      *logthrottle.Throttle // refused handshakes, summed up per address

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
	// HandshakesPerMinute caps the handshakes one source address may start
	// a minute (a tenth of it at once); 0 is no limit. The handshakes over
	// it are refused before any TLS work.
	HandshakesPerMinute int
	// SessionMemory caps, in bytes, what one session's streams may hold
	// unread on the relay together: yamux's window budget, QUIC's connection
	// window. 0 keeps the default (256 MiB).
	SessionMemory int64
}

// errTooManyHandshakes refuses a QUIC connection over the handshake limit.
var errTooManyHandshakes = errors.New("protocol: too many tunnel handshakes from this address")

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
	l := &Listener{
		tcp: tcp, udp: udp, tr: tr, tls: tlsConf, log: log,
		out:           make(chan protocol.Session),
		done:          make(chan struct{}),
		limit:         newHandshakeLimiter(lc.HandshakesPerMinute),
		perMinute:     lc.HandshakesPerMinute,
		sessionMemory: lc.SessionMemory,
		refusals:      logthrottle.New(log, refusalLogInterval),
	}
	qconf := relayQUICConfig()
	if lc.SessionMemory > 0 {
		qconf.InitialConnectionReceiveWindow = uint64(lc.SessionMemory)
		qconf.MaxConnectionReceiveWindow = uint64(lc.SessionMemory)
	}
	if l.limit != nil {
		// Both run before quic-go starts the TLS handshake: an address over
		// the limit costs the relay one packet in answer.
		tr.VerifySourceAddress = func(a net.Addr) bool { return l.limit.needsProof(a, time.Now()) }
		conf := qconf.Clone()
		qconf.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
			if !l.limit.allow(info.RemoteAddr, info.AddrVerified, time.Now()) {
				l.refused(info.RemoteAddr)
				return nil, errTooManyHandshakes
			}
			return conf, nil
		}
	}
	if l.ql, err = tr.Listen(tlsConf, qconf); err != nil {
		tcp.Close()
		udp.Close()
		return nil, fmt.Errorf("protocol: listen quic on %s: %w", udp.LocalAddr(), err)
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(3)
	go l.acceptQUIC()
	go l.acceptTCP()
	go func() {
		defer l.wg.Done()
		l.refusals.Run(l.ctx)
	}()
	return l, nil
}

// refusalLogInterval is how often the refused handshakes of an address are
// summed up in the log after the first one.
const refusalLogInterval = time.Minute

// refused logs a handshake refused by the limit.
func (l *Listener) refused(a net.Addr) {
	l.LogRefused(a, slog.LevelWarn, "tunnel handshake refused: too many from one address",
		"remote", limitKey(addrOf(a)).String(), "limit_per_minute", l.perMinute)
}

// LogRefused logs a handshake refused from the address remote, by the
// listener (too many) or by its caller (a wrong token): the first such line
// of an address at once, its repeats summed up once a minute, so that a
// peer retrying at will cannot flood the log.
func (l *Listener) LogRefused(remote net.Addr, level slog.Level, msg string, args ...any) {
	l.refusals.Log(level, limitKey(addrOf(remote)).String(), msg, args...)
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
		if l.limit != nil && !l.limit.allow(c.RemoteAddr(), true, time.Now()) {
			l.refused(c.RemoteAddr())
			// A reset, not a close: the relay keeps no TIME_WAIT for it.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
			continue
		}
		l.wg.Add(1)
		go l.handshakeTCP(c)
	}
}

func (l *Listener) handshakeTCP(c net.Conn) {
	defer l.wg.Done()
	raw := newBatchConn(c, false)
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
	s, err := newYamuxSession(tb, false, l.sessionMemory)
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
