package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// testCert is a self-signed certificate for "localhost", 127.0.0.1 and ::1, made once per test binary.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	return testutil.SelfSigned("localhost", "127.0.0.1", "::1")
})

// serverTLS is the relay's TLS configuration; Listen sets NextProtos itself.
func serverTLS() *tls.Config {
	cert, _ := testCert()
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// clientTLS is an agent's TLS configuration trusting the test certificate.
func clientTLS() *tls.Config {
	_, pool := testCert()
	return &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{protocol.ALPN}}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// listen opens a Listener on a free loopback port, closed when the test ends.
func listen(t testing.TB) *transport.Listener {
	t.Helper()
	l, err := transport.Listen("127.0.0.1:0", serverTLS(), testLogger(t))
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Listener.Close: %v", err)
		}
	})
	return l
}

// shortCtx is the test's context with a deadline, so that no step can hang.
func shortCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// closeOnCleanup closes s when the test ends.
func closeOnCleanup(t testing.TB, s protocol.Session) {
	t.Cleanup(func() { s.Close() })
}

// acceptOne waits for one session on l, and treats its peer as
// authenticated, as the relay does after its Welcome.
func acceptOne(t testing.TB, l *transport.Listener) protocol.Session {
	t.Helper()
	s, err := l.Accept(shortCtx(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Listener.Accept: %v", err)
	}
	closeOnCleanup(t, s)
	if a, ok := s.(interface{ Authenticated() }); ok {
		a.Authenticated()
	}
	return s
}

// quicPair is a QUIC session over loopback UDP: the agent side from DialQUIC, the relay side from Listen.
func quicPair(t testing.TB) (dialer, listener protocol.Session) {
	l := listen(t)
	d, err := transport.DialQUIC(shortCtx(t, 10*time.Second), l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialQUIC: %v", err)
	}
	closeOnCleanup(t, d)
	return d, acceptOne(t, l)
}

// tcpPair is a yamux session over TLS over loopback TCP.
func tcpPair(t testing.TB) (dialer, listener protocol.Session) {
	l := listen(t)
	d, err := transport.DialTCP(shortCtx(t, 10*time.Second), l.Addr().String(), clientTLS())
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	closeOnCleanup(t, d)
	return d, acceptOne(t, l)
}

// pipePair is a yamux session over an in-memory net.Pipe.
func pipePair(t testing.TB) (dialer, listener protocol.Session) {
	c1, c2 := net.Pipe()
	d, err := transport.NewYamuxSession(c1, true)
	if err != nil {
		t.Fatalf("NewYamuxSession(client): %v", err)
	}
	closeOnCleanup(t, d)
	s, err := transport.NewYamuxSession(c2, false)
	if err != nil {
		t.Fatalf("NewYamuxSession(server): %v", err)
	}
	closeOnCleanup(t, s)
	return d, s
}

// result runs f in a goroutine and returns a channel that gets its error.
func result(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// wait returns the error from ch, or fails the test if none arrives within d.
func wait(t *testing.T, what string, ch <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
		return nil
	}
}

// waitDone fails the test unless done is closed within d.
func waitDone(t *testing.T, what string, done <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: not closed after %v", what, d)
	}
}
