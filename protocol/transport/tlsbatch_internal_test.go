package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// writeCounter counts the writes that reach the socket.
type writeCounter struct {
	net.Conn
	writes atomic.Int64
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// batchPair returns a tlsBatch over a loopback TCP connection, its socket's
// write counter, and the TLS server reading the other end.
func batchPair(t *testing.T) (*tlsBatch, *writeCounter, *tls.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert, _ := testutil.SelfSigned("batch.test")
	srvCh := make(chan *tls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvCh <- nil
			return
		}
		sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if sc.Handshake() != nil {
			sc.Close()
			sc = nil
		}
		srvCh <- sc
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Conn: c}
	raw := newBatchConn(wc, true)
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a test of framing, not of trust
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	srv := <-srvCh
	if srv == nil {
		t.Fatal("server handshake failed")
	}
	b := newTLSBatch(tc, raw)
	t.Cleanup(func() { b.Close(); srv.Close() })
	return b, wc, srv
}

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint32(h[4:], 7)
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

// A yamux data frame (header, then body, as yamux's send loop writes them)
// reaches the socket in one write, and the peer reads the same bytes.
func TestTLSBatchFrameIsOneWrite(t *testing.T) {
	b, wc, srv := batchPair(t)
	small := bytes.Repeat([]byte("s"), 1200)
	large := make([]byte, 100<<10)
	rand.Read(large)
	cases := []struct {
		name   string
		writes [][]byte
	}{
		{"small data frame", [][]byte{yamuxHeader(0, uint32(len(small))), small}},
		{"large data frame", [][]byte{yamuxHeader(0, uint32(len(large))), large}},
		{"window update", [][]byte{yamuxHeader(1, 1<<20)}},
	}
	for _, tc := range cases {
		var want []byte
		before := wc.writes.Load()
		for _, w := range tc.writes {
			if n, err := b.Write(w); err != nil || n != len(w) {
				t.Fatalf("%s: Write = %d, %v", tc.name, n, err)
			}
			want = append(want, w...)
		}
		got := make([]byte, len(want))
		srv.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(srv, got); err != nil {
			t.Fatalf("%s: read: %v", tc.name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the peer read other bytes than were written", tc.name)
		}
		// The peer has it all: every socket write for it is done.
		if got := wc.writes.Load() - before; got != 1 {
			t.Errorf("%s: %d socket writes, want 1", tc.name, got)
		}
	}
}

// What yamux wrote before closing (a Reject, a GoAway) reaches the peer:
// Close sends what the writer goroutine still holds.
func TestTLSBatchCloseSendsPending(t *testing.T) {
	b, _, srv := batchPair(t)
	body := bytes.Repeat([]byte("r"), 3000)
	want := append(yamuxHeader(0, uint32(len(body))), body...)
	for range 20 {
		if _, err := b.Write(want[:yamuxHeaderSize]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(srv)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Logf("read ended with %v", err)
	}
	if !bytes.Equal(got, bytes.Repeat(want, 20)) {
		t.Fatalf("peer read %d bytes, want %d", len(got), 20*len(want))
	}
}

// Close of a tunnel whose peer stopped reading returns (after closeDrain)
// instead of waiting for the peer, and writes then fail.
func TestTLSBatchCloseStuckPeer(t *testing.T) {
	b, _, _ := batchPair(t) // the peer never reads
	wrote := writeFrames(b, 64<<10)
	// Let the socket buffers fill and the writer block.
	select {
	case <-wrote:
		t.Fatal("a write failed before Close")
	case <-time.After(500 * time.Millisecond):
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waits for a peer that does not read")
	}
	select {
	case <-wrote:
	case <-time.After(10 * time.Second):
		t.Fatal("writes go on after Close")
	}
}

// Close while yamux's send loop is writing large frames: the loop's writes
// and flushes end with an error, none waits forever for room that the
// stopped writer goroutine would never make.
func TestTLSBatchCloseDuringWrites(t *testing.T) {
	for i := range 30 {
		b, _, srv := batchPair(t)
		go io.Copy(io.Discard, srv)
		done := writeFrames(b, 300<<10) // more than maxPending per frame
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		b.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a write after Close never returned", i)
		}
	}
}

// writeFrames writes data frames of size bytes to b, as yamux's send loop
// does, until a write fails; the channel closes then.
func writeFrames(b *tlsBatch, size int) <-chan struct{} {
	body := make([]byte, size)
	hdr := yamuxHeader(0, uint32(size))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := b.Write(hdr); err != nil {
				return
			}
			if _, err := b.Write(body); err != nil {
				return
			}
		}
	}()
	return done
}
