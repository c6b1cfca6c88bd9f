package yamux

// Tests of Burrow's changes to yamux: see README.md.

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// gatedConn holds every write until open is closed.
type gatedConn struct {
	net.Conn
	open chan struct{}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	<-g.open
	return g.Conn.Write(p)
}

// inflightLen is the size of the table of streams opened and not yet acknowledged.
func inflightLen(s *Session) int {
	s.streamLock.Lock()
	defer s.streamLock.Unlock()
	return len(s.inflight)
}

// A stream reset (or closed) before the peer's ACK arrives is forgotten
// entirely: upstream kept its SYN entry for the session's lifetime.
func TestResetBeforeAckForgetsSYN(t *testing.T) {
	for _, end := range []struct {
		name string
		fn   func(*Stream) error
	}{
		{"Reset", (*Stream).Reset},
		{"CloseThenTimer", (*Stream).Close},
	} {
		t.Run(end.name, func(t *testing.T) {
			c1, c2 := net.Pipe()
			gate := make(chan struct{}) // holds back what the server sends
			conf := testConfNoKeepAlive()
			conf.StreamCloseTimeout = 20 * time.Millisecond
			client, server := testClientServerConfig(t, c1, &gatedConn{Conn: c2, open: gate}, conf, testConfNoKeepAlive())

			st, err := client.OpenStream()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte{'h'}); err != nil {
				t.Fatal(err)
			}
			accepted := make(chan *Stream, 1)
			go func() {
				peer, _ := server.AcceptStream() // queues the ACK behind the gate
				accepted <- peer
			}()
			time.Sleep(50 * time.Millisecond)
			if err := end.fn(st); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the close timer, where armed
			close(gate)                       // the ACK arrives after the stream is gone
			if peer := <-accepted; peer != nil {
				defer peer.Close()
			}
			deadline := time.Now().Add(2 * time.Second)
			for inflightLen(client) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d stream(s) still recorded as unacknowledged after the ACK arrived", inflightLen(client))
				}
				time.Sleep(5 * time.Millisecond)
			}
			if n := len(client.synCh); n != 0 {
				t.Errorf("%d SYN credit(s) still taken", n)
			}
		})
	}
}

// Reset fails the peer's writes and reads, and this side's, at once.
func TestResetStopsBothSides(t *testing.T) {
	client, server := testClientServer(t)
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("req")); err != nil {
		t.Fatal(err)
	}
	peer, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	// The peer writes more than a window: it blocks until the reset.
	werr := make(chan error, 1)
	go func() {
		_, err := peer.Write(make([]byte, 4*initialStreamWindow))
		werr <- err
	}()
	rerr := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, peer)
		rerr <- err
	}()
	buf := make([]byte, 1024)
	if _, err := io.ReadFull(st, buf); err != nil {
		t.Fatal(err)
	}
	if err := st.Reset(); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	for name, ch := range map[string]chan error{"peer write": werr, "peer read": rerr} {
		select {
		case err := <-ch:
			if !errors.Is(err, ErrConnectionReset) {
				t.Errorf("%s ended with %v, want %v", name, err, ErrConnectionReset)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s still blocked 2 s after Reset", name)
		}
	}
	if _, err := st.Read(buf); !errors.Is(err, ErrConnectionReset) {
		t.Errorf("local Read after Reset: %v, want %v", err, ErrConnectionReset)
	}
	if _, err := st.Write(buf); !errors.Is(err, ErrConnectionReset) {
		t.Errorf("local Write after Reset: %v, want %v", err, ErrConnectionReset)
	}
	if err := st.Reset(); err != nil {
		t.Errorf("second Reset: %v", err)
	}
	if n := client.NumStreams(); n != 0 {
		t.Errorf("%d stream(s) still open after Reset", n)
	}
}

// CloseWrite sends FIN without arming the close timer: the answer may take
// longer than StreamCloseTimeout and still arrives whole.
func TestCloseWriteKeepsReading(t *testing.T) {
	c1, c2 := testConnTLS(t)
	conf := testConf()
	conf.StreamCloseTimeout = 20 * time.Millisecond
	client, server := testClientServerConfig(t, c1, c2, conf, testConf())
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	peer, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "request" {
		t.Fatalf("peer read %q, %v; want the request and EOF", got, err)
	}
	time.Sleep(100 * time.Millisecond) // five close timeouts
	if _, err := peer.Write([]byte("late answer")); err != nil {
		t.Fatalf("peer Write after the half-close: %v", err)
	}
	peer.Close()
	got, err = io.ReadAll(st)
	if err != nil || string(got) != "late answer" {
		t.Fatalf("read %q, %v after CloseWrite; want the late answer and EOF", got, err)
	}
	if err := st.Close(); err != nil {
		t.Errorf("Close after CloseWrite: %v", err)
	}
}

// Close still resets a stream whose peer goes on sending, after StreamCloseTimeout.
func TestCloseStillResetsAfterTimeout(t *testing.T) {
	c1, c2 := testConnTLS(t)
	conf := testConf()
	conf.StreamCloseTimeout = 20 * time.Millisecond
	client, server := testClientServerConfig(t, c1, c2, conf, testConf())
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	peer, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	werr := make(chan error, 1)
	go func() {
		_, err := peer.Write(make([]byte, 4*initialStreamWindow))
		werr <- err
	}()
	select {
	case err := <-werr:
		if !errors.Is(err, ErrConnectionReset) {
			t.Errorf("peer write ended with %v, want %v", err, ErrConnectionReset)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("peer write still blocked 2 s after Close")
	}
}
