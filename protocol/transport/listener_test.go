package transport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

func TestListenerCloseIdempotent(t *testing.T) {
	l, err := transport.Listen("127.0.0.1:0", serverTLS(), testLogger(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	accepting := result(func() error {
		_, err := l.Accept(t.Context())
		return err
	})
	time.Sleep(20 * time.Millisecond)
	pending(t, "Accept", accepting)

	// Concurrent and repeated Close calls all return, without error.
	closes := []<-chan error{result(l.Close), result(l.Close)}
	for _, ch := range closes {
		if err := wait(t, "Close", ch, 5*time.Second); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("third Close: %v", err)
	}
	if err := wait(t, "Accept during Close", accepting, 2*time.Second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept during Close: %v, want net.ErrClosed", err)
	}
	if _, err := l.Accept(t.Context()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	// Both sockets are released.
	addr := l.Addr().String()
	if tl, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("TCP port still taken after Close: %v", err)
	} else {
		tl.Close()
	}
	if ul, err := net.ListenPacket("udp", addr); err != nil {
		t.Errorf("UDP port still taken after Close: %v", err)
	} else {
		ul.Close()
	}
}

// TestListenConfigDefaults: a ListenConfig without a logger or reset seed works.
func TestListenConfigDefaults(t *testing.T) {
	l, err := transport.ListenConfig{TLS: serverTLS()}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := shortCtx(t, 10*time.Second)
	q, err := transport.DialQUIC(ctx, l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	closeOnCleanup(t, q)
	streamPair(t, q, acceptOne(t, l))

	// A client without the burrow ALPN makes the listener log, to no logger.
	_, pool := testCert()
	if c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"}); err == nil {
		c.Read(make([]byte, 1))
		c.Close()
	}
}

func TestListenerAcceptHonoursContext(t *testing.T) {
	l := listen(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Accept past its deadline: %v, want context.DeadlineExceeded", err)
	}
}

// TestListenSamePort checks that one port number serves QUIC on UDP and TLS+yamux on TCP.
func TestListenSamePort(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			l, err := transport.Listen(addr, serverTLS(), testLogger(t))
			if err != nil {
				t.Fatalf("Listen(%q): %v", addr, err)
			}
			t.Cleanup(func() { l.Close() })
			port := l.Addr().(*net.TCPAddr).Port
			if port == 0 {
				t.Fatalf("Addr() = %v, want a port", l.Addr())
			}
			target := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			ctx := shortCtx(t, 10*time.Second)

			q, err := transport.DialQUIC(ctx, target, clientTLS())
			if err != nil {
				t.Fatalf("DialQUIC %s: %v", target, err)
			}
			closeOnCleanup(t, q)
			y, err := transport.DialTCP(ctx, target, clientTLS())
			if err != nil {
				t.Fatalf("DialTCP %s: %v", target, err)
			}
			closeOnCleanup(t, y)

			got := map[string]bool{}
			for range 2 {
				s := acceptOne(t, l)
				got[s.Transport()] = true
			}
			if !got["quic"] || !got["tcp"] {
				t.Errorf("accepted transports %v, want quic and tcp", got)
			}
			if q.Transport() != "quic" || y.Transport() != "tcp" {
				t.Errorf("dialed transports %q and %q, want quic and tcp", q.Transport(), y.Transport())
			}
		})
	}
}

func TestListenUDPPortTaken(t *testing.T) {
	// Another process may hold the TCP port of the same number, by chance: try a few.
	var lastErr error
	for range 5 {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := udp.LocalAddr().String()
		if tl, err := net.Listen("tcp", addr); err != nil {
			udp.Close()
			continue
		} else {
			tl.Close()
		}
		l, err := transport.Listen(addr, serverTLS(), testLogger(t))
		if err == nil {
			l.Close()
			udp.Close()
			t.Fatalf("Listen(%s) with the UDP port taken succeeded", addr)
		}
		if !strings.Contains(err.Error(), "listen udp") {
			udp.Close()
			continue // lost the TCP port meanwhile
		}
		// The TCP listener opened before the failure is released.
		tl, err := net.Listen("tcp", addr)
		udp.Close()
		if err == nil {
			tl.Close()
			return
		}
		lastErr = err
	}
	if lastErr == nil {
		t.Skip("no port number free on both UDP and TCP in 5 tries")
	}
	t.Fatalf("TCP port left open by a Listen that failed on UDP: %v", lastErr)
}

// TestListenerRefusesWithoutALPN: clients that do not speak burrow/1 get no session.
func TestListenerRefusesWithoutALPN(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	ctx := shortCtx(t, 10*time.Second)
	_, pool := testCert()

	t.Run("tls-without-alpn", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			// Refused during the handshake: fine too.
			return
		}
		defer c.Close()
		if p := c.ConnectionState().NegotiatedProtocol; p != "" {
			t.Errorf("negotiated %q", p)
		}
		// The relay hangs up.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read from a connection without ALPN: %v, want the relay to close it", err)
		}
	})
	t.Run("tls-other-alpn", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
		if err == nil {
			c.Close()
			t.Fatalf("TLS handshake offering only h2 and http/1.1 succeeded, negotiated %q", c.ConnectionState().NegotiatedProtocol)
		}
	})
	t.Run("quic-other-alpn", func(t *testing.T) {
		c, err := quic.DialAddr(ctx, addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h3"}}, nil)
		if err == nil {
			c.CloseWithError(0, "")
			t.Fatal("QUIC handshake offering only h3 succeeded")
		}
	})

	if s, err := l.Accept(shortCtx(t, 300*time.Millisecond)); err == nil {
		s.Close()
		t.Fatalf("a session over %s was delivered to a client without the burrow ALPN", s.Transport())
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept: %v", err)
	}
}

// TestDialTCPRequiresALPN: the agent refuses a TLS server that does not negotiate burrow/1.
func TestDialTCPRequiresALPN(t *testing.T) {
	cert, _ := testCert()
	tl, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	served := result(func() error {
		c, err := tl.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			return nil // the client may hang up first
		}
		io.Copy(io.Discard, c)
		return nil
	})
	s, err := transport.DialTCP(shortCtx(t, 10*time.Second), tl.Addr().String(), clientTLS())
	if err == nil {
		s.Close()
		t.Error("DialTCP to a server without the burrow ALPN succeeded")
	}
	tl.Close()
	if err := wait(t, "TLS server", served, 5*time.Second); err != nil {
		t.Error(err)
	}
}

// TestListenerCloseDuringHandshake: a TCP client that never finishes its TLS
// handshake does not hold up Close for the handshake timeout.
func TestListenerCloseDuringHandshake(t *testing.T) {
	l, err := transport.Listen("127.0.0.1:0", serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the listener start the handshake
	start := time.Now()
	if err := wait(t, "Close with a handshake in progress", result(l.Close), 5*time.Second); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with a stalled handshake", d)
	}
}

// TestListenerCloseEndsUndelivered: sessions that completed their handshake but
// were never accepted are closed by Listener.Close, and their agents notice.
func TestListenerCloseEndsUndelivered(t *testing.T) {
	l, err := transport.Listen("127.0.0.1:0", serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := shortCtx(t, 10*time.Second)
	q, err := transport.DialQUIC(ctx, l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	closeOnCleanup(t, q)
	y, err := transport.DialTCP(ctx, l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	closeOnCleanup(t, y)
	time.Sleep(50 * time.Millisecond) // let the listener finish its side of the handshakes
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitDone(t, "QUIC agent session", q.Done(), 5*time.Second)
	waitDone(t, "TCP agent session", y.Done(), 5*time.Second)
}

// TestListenerCloseKeepsSessions: sessions already accepted outlive
// Listener.Close on both transports (they are the caller's to close), so a
// relay can stop taking agents and still drain the ones it has.
func TestListenerCloseKeepsSessions(t *testing.T) {
	l, err := transport.Listen("127.0.0.1:0", serverTLS(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx := shortCtx(t, 10*time.Second)
	q, err := transport.DialQUIC(ctx, l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	closeOnCleanup(t, q)
	relayQ := acceptOne(t, l)
	y, err := transport.DialTCP(ctx, l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	closeOnCleanup(t, y)
	relayY := acceptOne(t, l)

	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	for _, p := range []struct{ agent, relay protocol.Session }{{q, relayQ}, {y, relayY}} {
		// Both directions still work.
		streamPair(t, p.agent, p.relay)
		streamPair(t, p.relay, p.agent)
		select {
		case <-p.agent.Done():
			t.Errorf("%s agent session ended by Listener.Close", p.agent.Transport())
		case <-p.relay.Done():
			t.Errorf("%s relay session ended by Listener.Close", p.relay.Transport())
		default:
		}
	}

	// Closing the sessions afterwards ends them cleanly for the agents too...
	relayQ.Close()
	waitDone(t, "QUIC agent session after the relay closed it", q.Done(), 5*time.Second)
	relayY.Close()
	waitDone(t, "TCP agent session after the relay closed it", y.Done(), 5*time.Second)

	// ...and the end of the last QUIC session releases the UDP port.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ul, err := net.ListenPacket("udp", l.Addr().String())
		if err == nil {
			ul.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UDP port still taken after the last QUIC session ended: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Both dialers take the relay's host name as the TLS server name when the
// configuration names none, as an agent configured with "relay.example:443"
// expects: not the address it resolved to.
func TestDialServerNameFromAddress(t *testing.T) {
	cert, pool := testutil.SelfSigned("localhost") // a name, no address
	l, err := transport.ListenConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	addr := net.JoinHostPort("localhost", port)
	for name, dial := range map[string]func(context.Context, string, *tls.Config) (protocol.Session, error){
		"quic": transport.DialQUIC, "tcp": transport.DialTCP,
	} {
		conf := &tls.Config{RootCAs: pool, NextProtos: []string{protocol.ALPN}}
		s, err := dial(shortCtx(t, 10*time.Second), addr, conf)
		if err != nil {
			t.Errorf("%s: dial %s without ServerName: %v", name, addr, err)
			continue
		}
		s.Close()
	}
}

// ListenConfig.SessionMemory caps what a relay's QUIC session may hold
// unread: the agent's writes on streams the relay does not read stop there.
func TestSessionMemoryCapsQUIC(t *testing.T) {
	const capBytes = 1 << 20
	l, err := transport.ListenConfig{TLS: serverTLS(), Log: testLogger(t), SessionMemory: capBytes}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	agent, err := transport.DialQUIC(shortCtx(t, 10*time.Second), l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, agent)
	relay := acceptOne(t, l)
	var written atomic.Int64
	for range 40 {
		st, err := relay.OpenStream(shortCtx(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		peer, err := agent.AcceptStream(shortCtx(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 16<<10)
			for {
				n, err := peer.Write(buf)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(time.Second)
	if n := written.Load(); n > capBytes+256<<10 {
		t.Errorf("the agent wrote %d KiB to streams nobody reads, over the session's %d KiB", n>>10, capBytes>>10)
	}
}
