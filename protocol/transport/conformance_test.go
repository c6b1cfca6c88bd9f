package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
	"github.com/burrow-tunnel/burrow/protocol/transport"
)

// A pairMaker makes a connected pair of sessions: the side that dialed and the side that listened.
type pairMaker struct {
	name string
	pair func(t testing.TB) (dialer, listener protocol.Session)
}

var transports = []pairMaker{
	{name: "quic", pair: quicPair},
	{name: "tls-yamux", pair: tcpPair},
	{name: "pipe-yamux", pair: pipePair},
}

// sessionPair is what a conformance case runs against: opener opens the streams, acceptor accepts them.
type sessionPair struct {
	opener   protocol.Session
	acceptor protocol.Session
	// acceptorIsRelay: the acceptor is the listening (relay) side, which lets
	// the agent open only a few streams at once.
	acceptorIsRelay bool
}

// TestSessionConformance runs every case against every Session implementation,
// once with the dialing side opening the streams and once with the listening side.
func TestSessionConformance(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, p sessionPair)
	}{
		{"OpenAcceptEcho", testOpenAcceptEcho},
		{"HalfClose", testHalfClose},
		{"HalfCloseSlowReply", testHalfCloseSlowReply},
		{"CloseEndsPeer", testCloseEndsPeer},
		{"CloseAfterCloseWrite", testCloseAfterCloseWrite},
		{"Deadlines", testDeadlines},
		{"LargeTransfer", testLargeTransfer},
		{"ManyStreams", testManyStreams},
		{"CloseWhileBusy", testCloseWhileBusy},
		{"CloseUnblocksWrite", testCloseUnblocksWrite},
		{"AbortStopsPeer", testAbortStopsPeer},
		{"UnreadStreamHoldsLittle", testUnreadStreamHoldsLittle},
		{"AbortFailsRead", testAbortFailsRead},
		{"ContextCancel", testContextCancel},
		{"OpenAfterClose", testOpenAfterClose},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			for _, dir := range []string{"dialer-opens", "listener-opens"} {
				t.Run(dir, func(t *testing.T) {
					t.Parallel()
					for _, c := range cases {
						t.Run(c.name, func(t *testing.T) {
							t.Parallel()
							d, l := tr.pair(t)
							p := sessionPair{opener: d, acceptor: l, acceptorIsRelay: true}
							if dir == "listener-opens" {
								p.opener, p.acceptor, p.acceptorIsRelay = l, d, false
							}
							c.fn(t, p)
						})
					}
				})
			}
		})
	}
}

// streamPair opens a stream on o and accepts it on a. It sends one byte first:
// a QUIC stream reaches the peer only with its first frame.
func streamPair(t *testing.T, o, a protocol.Session) (ost, ast protocol.Stream) {
	t.Helper()
	ctx := shortCtx(t, 10*time.Second)
	ost, err := o.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	t.Cleanup(func() { ost.Close() })
	if _, err := ost.Write([]byte{'h'}); err != nil {
		t.Fatalf("opener Write: %v", err)
	}
	ast, err = a.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("AcceptStream: %v", err)
	}
	t.Cleanup(func() { ast.Close() })
	var b [1]byte
	if _, err := io.ReadFull(ast, b[:]); err != nil || b[0] != 'h' {
		t.Fatalf("acceptor read %q, %v; want \"h\"", b[:], err)
	}
	return ost, ast
}

// readAll reads r to its end, failing the test if that takes longer than d.
func readAll(t *testing.T, what string, r io.Reader, d time.Duration) []byte {
	t.Helper()
	var b []byte
	err := wait(t, what, result(func() error {
		var err error
		b, err = io.ReadAll(r)
		return err
	}), d)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return b
}

// readOne does one Read of up to 1 byte in a goroutine.
func readOne(r io.Reader) <-chan error {
	return result(func() error {
		_, err := r.Read(make([]byte, 1))
		return err
	})
}

// writeUntilError writes until a write fails, and returns that error.
func writeUntilError(w io.Writer) <-chan error {
	return result(func() error {
		buf := make([]byte, 32<<10)
		for {
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
	})
}

// pending fails the test if ch already has a result.
func pending(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned before the session was closed: %v", what, err)
	default:
	}
}

func testOpenAcceptEcho(t *testing.T, p sessionPair) {
	ctx := shortCtx(t, 10*time.Second)
	for _, s := range []protocol.Session{p.opener, p.acceptor} {
		if s.LocalAddr() == nil || s.RemoteAddr() == nil {
			t.Errorf("session addresses: local %v, remote %v", s.LocalAddr(), s.RemoteAddr())
		}
		if tr := s.Transport(); tr != "quic" && tr != "tcp" {
			t.Errorf("Transport() = %q, want quic or tcp", tr)
		}
	}
	for i := range 3 {
		msg := fmt.Appendf(nil, "hello %d from the opener", i)
		echoed := result(func() error {
			st, err := p.acceptor.AcceptStream(ctx)
			if err != nil {
				return fmt.Errorf("AcceptStream: %w", err)
			}
			defer st.Close()
			if st.LocalAddr() == nil || st.RemoteAddr() == nil {
				return fmt.Errorf("accepted stream addresses: local %v, remote %v", st.LocalAddr(), st.RemoteAddr())
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(st, buf); err != nil {
				return fmt.Errorf("acceptor read: %w", err)
			}
			if !bytes.Equal(buf, msg) {
				return fmt.Errorf("acceptor read %q, want %q", buf, msg)
			}
			if _, err := st.Write(bytes.ToUpper(buf)); err != nil {
				return fmt.Errorf("acceptor write: %w", err)
			}
			return nil
		})
		st, err := p.opener.OpenStream(ctx)
		if err != nil {
			t.Fatalf("OpenStream: %v", err)
		}
		if st.LocalAddr() == nil || st.RemoteAddr() == nil {
			t.Errorf("opened stream addresses: local %v, remote %v", st.LocalAddr(), st.RemoteAddr())
		}
		if _, err := st.Write(msg); err != nil {
			t.Fatalf("opener write: %v", err)
		}
		got := make([]byte, len(msg))
		if err := wait(t, "opener read", result(func() error {
			_, err := io.ReadFull(st, got)
			return err
		}), 10*time.Second); err != nil {
			t.Fatalf("opener read: %v", err)
		}
		if want := bytes.ToUpper(msg); !bytes.Equal(got, want) {
			t.Fatalf("opener read %q, want %q", got, want)
		}
		if err := st.Close(); err != nil {
			t.Errorf("stream Close: %v", err)
		}
		if err := wait(t, "acceptor", echoed, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// halfClose: the opener sends a request and CloseWrite; the acceptor reads it
// to EOF, waits delay, answers, and the opener reads the answer to EOF.
func halfClose(t *testing.T, p sessionPair, delay time.Duration) {
	ctx := shortCtx(t, 10*time.Second)
	req := []byte("the whole request, then end-of-stream")
	resp := []byte("the answer, sent after the peer's end-of-stream")
	served := result(func() error {
		st, err := p.acceptor.AcceptStream(ctx)
		if err != nil {
			return fmt.Errorf("AcceptStream: %w", err)
		}
		defer st.Close()
		got, err := io.ReadAll(st)
		if err != nil {
			return fmt.Errorf("acceptor ReadAll: %w", err)
		}
		if !bytes.Equal(got, req) {
			return fmt.Errorf("acceptor read %q, want %q", got, req)
		}
		time.Sleep(delay)
		if _, err := st.Write(resp); err != nil {
			return fmt.Errorf("acceptor write after the peer's CloseWrite: %w", err)
		}
		if err := st.CloseWrite(); err != nil {
			return fmt.Errorf("acceptor CloseWrite: %w", err)
		}
		return nil
	})
	st, err := p.opener.OpenStream(ctx)
	if err != nil {
		t.Fatalf("OpenStream: %v", err)
	}
	defer st.Close()
	if _, err := st.Write(req); err != nil {
		t.Fatalf("opener write: %v", err)
	}
	if err := st.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if _, err := st.Write([]byte("late")); err == nil {
		t.Error("Write after CloseWrite succeeded")
	}
	got := readAll(t, "opener ReadAll after CloseWrite", st, 10*time.Second)
	if err := wait(t, "acceptor", served, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, resp) {
		t.Fatalf("opener read %q, want %q", got, resp)
	}
}

func testHalfClose(t *testing.T, p sessionPair) { halfClose(t, p, 0) }

// testHalfCloseSlowReply: a half-closed stream stays open for reading until the
// peer ends its side, however long the peer takes (a raw TCP client that shuts
// down its write side and waits for a slow answer). The delay is well past
// yamux's reset delay after Close.
func testHalfCloseSlowReply(t *testing.T, p sessionPair) { halfClose(t, p, time.Second) }

func testCloseEndsPeer(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)

	blocked := readOne(ost)
	time.Sleep(20 * time.Millisecond)
	pending(t, "Read", blocked)
	if err := ost.Close(); err != nil {
		t.Fatalf("stream Close: %v", err)
	}
	if _, err := ost.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := wait(t, "Read blocked during own Close", blocked, 5*time.Second); err == nil {
		t.Error("Read blocked during Close returned no error")
	}

	// The peer's read ends (EOF, or a reset once yamux's close timeout has passed)...
	if err := wait(t, "peer Read after Close", readOne(ast), 5*time.Second); err == nil {
		t.Error("peer Read after Close returned no error")
	}
	// ...and so do its writes, promptly: the closing side reads no more.
	if err := wait(t, "peer Write after Close", writeUntilError(ast), 5*time.Second); err == nil {
		t.Error("peer Write after Close returned no error")
	}
}

// testCloseAfterCloseWrite: Close still unblocks a local Read after CloseWrite.
func testCloseAfterCloseWrite(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)
	if err := ost.CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	if err := wait(t, "peer Read after CloseWrite", readOne(ast), 5*time.Second); err != io.EOF {
		t.Errorf("peer Read after CloseWrite: %v, want io.EOF", err)
	}
	blocked := readOne(ost)
	time.Sleep(20 * time.Millisecond)
	pending(t, "Read", blocked)
	if err := ost.Close(); err != nil {
		t.Errorf("Close after CloseWrite: %v", err)
	}
	if err := wait(t, "Read blocked during Close", blocked, time.Second); err == nil {
		t.Error("Read blocked during Close returned no error")
	}
}

func testDeadlines(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)

	// The opener reads nothing, so its receive window stays at its initial size
	// and a write larger than any window blocks until its deadline.
	if err := ast.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatalf("SetWriteDeadline: %v", err)
	}
	// yamux applies the deadline while it waits for window, not while its
	// send loop is still writing the frame before: on a machine busy with
	// the other parallel cases that can take seconds.
	err := wait(t, "Write past its deadline", result(func() error {
		_, err := ast.Write(make([]byte, 2*transport.StreamWindow))
		return err
	}), 20*time.Second)
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("Write past its deadline: %v, want a net.Error with Timeout()", err)
	}

	if err := ast.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	err = wait(t, "Read past its deadline", readOne(ast), 5*time.Second)
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("Read past its deadline: %v, want a net.Error with Timeout()", err)
	}
	if err := ast.SetReadDeadline(time.Time{}); err != nil {
		t.Fatalf("SetReadDeadline(zero): %v", err)
	}
	if _, err := ost.Write([]byte("x")); err != nil {
		t.Fatalf("opener write: %v", err)
	}
	var b [1]byte
	if err := wait(t, "Read after clearing the deadline", result(func() error {
		_, err := io.ReadFull(ast, b[:])
		return err
	}), 5*time.Second); err != nil || b[0] != 'x' {
		t.Errorf("Read after clearing the deadline: %q, %v", b[:], err)
	}
}

// largeTransferSize is the number of bytes sent each way in testLargeTransfer;
// smaller under the race detector (race_test.go), where QUIC moves ~5 MB/s.
var largeTransferSize int64 = 64 << 20

type transferSum struct {
	n   int64
	sum [sha256.Size]byte
}

// sendRandom writes n pseudo-random bytes and CloseWrite, and returns what it sent.
func sendRandom(st protocol.Stream, n int64, seed byte) (transferSum, error) {
	h := sha256.New()
	src := io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
	sent, err := io.CopyBuffer(io.MultiWriter(st, h), src, make([]byte, 61<<10))
	if err != nil {
		return transferSum{}, err
	}
	if err := st.CloseWrite(); err != nil {
		return transferSum{}, fmt.Errorf("CloseWrite: %w", err)
	}
	return transferSum{n: sent, sum: [32]byte(h.Sum(nil))}, nil
}

// receive reads r to EOF and returns what it got.
func receive(r io.Reader) (transferSum, error) {
	h := sha256.New()
	got, err := io.CopyBuffer(h, r, make([]byte, 47<<10))
	return transferSum{n: got, sum: [32]byte(h.Sum(nil))}, err
}

func testLargeTransfer(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)
	n := largeTransferSize
	start := time.Now()

	var sentO, sentA, gotO, gotA transferSum
	done := []<-chan error{
		result(func() (err error) { sentO, err = sendRandom(ost, n, 1); return }),
		result(func() (err error) { sentA, err = sendRandom(ast, n, 2); return }),
		result(func() (err error) { gotA, err = receive(ast); return }),
		result(func() (err error) { gotO, err = receive(ost); return }),
	}
	for i, ch := range done {
		if err := wait(t, "transfer", ch, 45*time.Second); err != nil {
			t.Fatalf("transfer goroutine %d: %v", i, err)
		}
	}
	t.Logf("%d MiB each way in %v", n>>20, time.Since(start).Round(time.Millisecond))
	if sentO.n != n || sentA.n != n {
		t.Fatalf("sent %d and %d bytes, want %d", sentO.n, sentA.n, n)
	}
	if gotA != sentO {
		t.Errorf("opener to acceptor: got %d bytes (sha256 %x), sent %d (sha256 %x)", gotA.n, gotA.sum, sentO.n, sentO.sum)
	}
	if gotO != sentA {
		t.Errorf("acceptor to opener: got %d bytes (sha256 %x), sent %d (sha256 %x)", gotO.n, gotO.sum, sentA.n, sentA.sum)
	}
}

func testManyStreams(t *testing.T, p sessionPair) {
	n := 200
	if p.acceptorIsRelay {
		n = transport.RelayIncomingStreams // the relay's cap on streams opened by an agent
	}
	ctx := shortCtx(t, 30*time.Second)

	// The acceptor echoes every stream until its end.
	echoErrs := make(chan error, n)
	accepted := result(func() error {
		for range n {
			st, err := p.acceptor.AcceptStream(ctx)
			if err != nil {
				return fmt.Errorf("AcceptStream: %w", err)
			}
			go func() {
				defer st.Close()
				if _, err := io.Copy(st, st); err != nil {
					echoErrs <- fmt.Errorf("echo: %w", err)
					return
				}
				echoErrs <- st.CloseWrite()
			}()
		}
		return nil
	})

	// The opener holds all n streams open at once before finishing any.
	var opened sync.WaitGroup
	opened.Add(n)
	release := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				payload := bytes.Repeat(fmt.Appendf(nil, "stream %d;", i), 100+i)
				st, err := p.opener.OpenStream(ctx)
				if err == nil {
					defer st.Close()
					_, err = st.Write(payload)
				}
				opened.Done()
				if err != nil {
					return err
				}
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				if err := st.CloseWrite(); err != nil {
					return fmt.Errorf("CloseWrite: %w", err)
				}
				got, err := io.ReadAll(st)
				if err != nil {
					return fmt.Errorf("stream %d: read echo: %w", i, err)
				}
				if !bytes.Equal(got, payload) {
					return fmt.Errorf("stream %d: echo of %d bytes differs from the %d sent", i, len(got), len(payload))
				}
				return nil
			}()
		}()
	}
	allOpen := make(chan struct{})
	go func() {
		opened.Wait()
		close(allOpen)
	}()
	waitDone(t, "all streams open", allOpen, 20*time.Second)
	close(release)

	if err := wait(t, "accepting", accepted, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				t.Error(err)
			}
		case <-deadline:
			t.Fatal("streams still running after 20s")
		}
		select {
		case err := <-echoErrs:
			if err != nil {
				t.Error(err)
			}
		case <-deadline:
			t.Fatal("echoes still running after 20s")
		}
	}
}

func testCloseWhileBusy(t *testing.T, p sessionPair) {
	o, a := p.opener, p.acceptor
	busyO, busyA := streamPair(t, o, a) // the opener writes, nobody reads
	writeO := writeUntilError(busyO)
	// Both sides wait to read: on a second stream, or, where the relay lets
	// an agent open only one, on the busy one in the acceptor's direction.
	idleO, idleA := busyO, busyA
	if !p.acceptorIsRelay || transport.RelayIncomingStreams > 1 {
		idleO, idleA = streamPair(t, o, a)
	}
	readO := readOne(idleO)
	var readA <-chan error
	if idleA != busyA {
		readA = readOne(idleA)
	}
	acceptO := result(func() error { _, err := o.AcceptStream(t.Context()); return err })
	acceptA := result(func() error { _, err := a.AcceptStream(t.Context()); return err })
	time.Sleep(100 * time.Millisecond)
	for what, ch := range map[string]<-chan error{"Read": readO, "peer Read": readA, "Write": writeO, "AcceptStream": acceptO, "peer AcceptStream": acceptA} {
		if ch != nil {
			pending(t, what, ch)
		}
	}

	start := time.Now()
	if err := wait(t, "session Close", result(o.Close), 5*time.Second); err != nil {
		t.Errorf("session Close: %v", err)
	}
	waitDone(t, "Done after Close", o.Done(), 2*time.Second)
	// yamux reports the end of the session to a blocked Read as io.EOF, QUIC as an error.
	if err := wait(t, "blocked Read", readO, 2*time.Second); err == nil {
		t.Error("blocked Read returned no error")
	}
	if err := wait(t, "blocked Write", writeO, 2*time.Second); err == nil {
		t.Error("blocked Write returned no error")
	}
	if err := wait(t, "blocked AcceptStream", acceptO, 2*time.Second); !errors.Is(err, protocol.ErrSessionClosed) {
		t.Errorf("blocked AcceptStream: %v, want ErrSessionClosed", err)
	}
	t.Logf("local side unblocked %v after Close", time.Since(start).Round(time.Millisecond))

	waitDone(t, "peer Done", a.Done(), 5*time.Second)
	if readA != nil {
		if err := wait(t, "peer's blocked Read", readA, 2*time.Second); err == nil {
			t.Error("peer's blocked Read returned no error")
		}
	}
	if err := wait(t, "peer's blocked AcceptStream", acceptA, 2*time.Second); !errors.Is(err, protocol.ErrSessionClosed) {
		t.Errorf("peer's blocked AcceptStream: %v, want ErrSessionClosed", err)
	}
	if err := wait(t, "second Close", result(o.Close), 5*time.Second); err != nil {
		t.Logf("second Close: %v", err)
	}
}

// testCloseUnblocksWrite closes a stream while another goroutine's Write
// waits for the peer to read, as the agent does when its session ends during a
// video the viewer has paused. The Write must fail at once, and must not wait
// for the end of the session, nor hang once the session has ended.
func testCloseUnblocksWrite(t *testing.T, p sessionPair) {
	o, a := p.opener, p.acceptor
	busyO, _ := streamPair(t, o, a) // the opener writes, nobody reads
	writeO := writeUntilError(busyO)
	time.Sleep(100 * time.Millisecond)
	pending(t, "Write", writeO)
	if err := wait(t, "stream Close", result(busyO.Close), 2*time.Second); err != nil {
		t.Errorf("stream Close: %v", err)
	}
	select {
	case err := <-writeO:
		if err == nil {
			t.Error("blocked Write returned no error")
		}
		return
	case <-time.After(2 * time.Second):
	}
	// Still blocked: the session's end must release it.
	o.Close()
	if err := wait(t, "blocked Write after the stream's Close and the session's end", writeO, 5*time.Second); err == nil {
		t.Error("blocked Write returned no error")
	}
	t.Error("stream Close left a blocked Write waiting for the peer")
}

// testAbortStopsPeer aborts a stream while the peer writes to it at 64 MB/s,
// as the relay does when a viewer seeks away from a video the agent is
// sending. The peer's writes must fail before it has pushed more than a
// little more into the tunnel; a FIN alone would let it go on as long as its
// flow-control credit lasts (16 MiB).
func testAbortStopsPeer(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)
	var wrote atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := ast.Write(buf)
			wrote.Add(int64(n))
			if err != nil {
				writeErr <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	if _, err := io.ReadFull(ost, make([]byte, 1<<20)); err != nil {
		t.Fatalf("reading the first MiB: %v", err)
	}
	ost.Abort()
	at := wrote.Load()
	select {
	case <-writeErr:
	case <-time.After(10 * time.Second):
		t.Fatal("the peer's writes still succeeded 10 s after Abort")
	}
	if after := wrote.Load() - at; after >= 8<<20 {
		t.Errorf("the peer wrote %d MiB after Abort, want under 8", after>>20)
	}
	if _, err := ost.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Abort succeeded")
	}
}

// testUnreadStreamHoldsLittle writes to a stream whose reader reads nothing,
// as the agent answers a visitor who asked for a video and reads none of it.
// The writer must stall once the stream's initial window is full: a 16 MiB
// window granted up front would let each such visitor cost the relay 16 MiB.
func testUnreadStreamHoldsLittle(t *testing.T, p sessionPair) {
	ost, ast := streamPair(t, p.opener, p.acceptor)
	var wrote atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := ast.Write(buf)
			wrote.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	last := int64(-1)
	for n := wrote.Load(); n != last; n = wrote.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("the writer still makes progress after 10 s and %d MiB", n>>20)
		}
		last = n
		time.Sleep(200 * time.Millisecond)
	}
	if last > 2<<20 {
		t.Errorf("the writer moved %d KiB into a stream nobody reads, want at most 2 MiB", last>>10)
	}
	ost.Abort()
}

// testAbortFailsRead aborts a stream while a Read waits on it, as the relay
// does when a visitor's request ends while the answer is still coming. The
// Read must fail, not report the end of the stream: a proxy would take the
// answer cut short for a whole one. Several rounds, as the two can race.
func testAbortFailsRead(t *testing.T, p sessionPair) {
	for range 10 {
		ost, ast := streamPair(t, p.opener, p.acceptor)
		readErr := readOne(ost)
		time.Sleep(5 * time.Millisecond) // the Read is waiting
		ost.Abort()
		if err := wait(t, "Read during Abort", readErr, 5*time.Second); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("Read during Abort: %v, want an error other than EOF", err)
		}
		ast.Close() // the relay lets an agent have one stream open at a time
	}
}

func testContextCancel(t *testing.T, p sessionPair) {
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := wait(t, "AcceptStream past its deadline", result(func() error {
		_, err := p.acceptor.AcceptStream(ctx)
		return err
	}), 5*time.Second)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, protocol.ErrSessionClosed) {
		t.Errorf("AcceptStream past its deadline: %v, want context.DeadlineExceeded", err)
	}

	ctx, cancel = context.WithCancel(t.Context())
	accepting := result(func() error {
		_, err := p.acceptor.AcceptStream(ctx)
		return err
	})
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := wait(t, "AcceptStream after cancel", accepting, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("AcceptStream after cancel: %v, want context.Canceled", err)
	}
	if _, err := p.opener.OpenStream(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("OpenStream with a cancelled context: %v, want context.Canceled", err)
	}

	// The session is unharmed, and no stream was lost to the cancelled calls.
	select {
	case <-p.opener.Done():
		t.Fatal("opener session closed")
	case <-p.acceptor.Done():
		t.Fatal("acceptor session closed")
	default:
	}
	streamPair(t, p.opener, p.acceptor)
}

func testOpenAfterClose(t *testing.T, p sessionPair) {
	ctx := shortCtx(t, 10*time.Second)
	if err := p.opener.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	waitDone(t, "Done after Close", p.opener.Done(), 5*time.Second)
	waitDone(t, "peer Done", p.acceptor.Done(), 5*time.Second)
	for _, side := range []struct {
		name string
		s    protocol.Session
	}{{"closed side", p.opener}, {"peer", p.acceptor}} {
		if _, err := side.s.OpenStream(ctx); !errors.Is(err, protocol.ErrSessionClosed) {
			t.Errorf("%s: OpenStream after Close: %v, want ErrSessionClosed", side.name, err)
		}
		if _, err := side.s.AcceptStream(ctx); !errors.Is(err, protocol.ErrSessionClosed) {
			t.Errorf("%s: AcceptStream after Close: %v, want ErrSessionClosed", side.name, err)
		}
	}
	if err := wait(t, "second Close", result(p.opener.Close), 5*time.Second); err != nil {
		t.Logf("second Close: %v", err)
	}
}
