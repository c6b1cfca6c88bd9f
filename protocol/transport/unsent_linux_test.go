package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"syscall"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"

	"github.com/burrow-tunnel/burrow/protocol"
	"golang.org/x/sys/unix"
)

// TestTunnelSocketsCapUnsent checks TCP_NOTSENT_LOWAT on both ends of a TCP
// tunnel: without it a seek's answer waits behind megabytes of the
// abandoned one in the kernel's send buffer.
func TestTunnelSocketsCapUnsent(t *testing.T) {
	cert, _ := testutil.SelfSigned("batch.test")
	l, err := ListenConfig{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	d, err := DialTCP(ctx, l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "batch.test", NextProtos: []string{protocol.ALPN}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, sess := range map[string]protocol.Session{"dialer": d, "listener": s} {
		if got := notSentLowat(t, sess); got != tunnelUnsent {
			t.Errorf("%s: TCP_NOTSENT_LOWAT = %d, want %d", name, got, tunnelUnsent)
		}
	}
}

func notSentLowat(t *testing.T, s protocol.Session) int {
	t.Helper()
	ys, ok := s.(*yamuxSession)
	if !ok {
		t.Fatalf("%T is not a TCP session", s)
	}
	sc := ys.conn.(*tlsBatch).raw.Conn.(syscall.Conn)
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}
