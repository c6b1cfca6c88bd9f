package yamux

// Tests of Burrow's changes to yamux: see README.md.

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
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

// tuningConf is a configuration whose stream windows grow from 256 KiB to
// 16 MiB, as Burrow's. Its write timeout is long: the race detector on a
// busy machine is slow.
func tuningConf() *Config {
	conf := testConfNoKeepAlive()
	conf.MaxStreamWindowSize = 16 << 20
	conf.ConnectionWriteTimeout = 10 * time.Second
	return conf
}

// testConnDelayed is testConnTCP's pair with oneWay added to each direction
// (Burrow): a path whose round trip a window must cover, which loopback's
// microseconds are not.
func testConnDelayed(t *testing.T, oneWay time.Duration) (io.ReadWriteCloser, io.ReadWriteCloser) {
	a1, a2 := testConnTCP(t)
	b1, b2 := testConnTCP(t)
	delay := func(dst, src io.ReadWriteCloser) {
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 1<<14)
		go func() {
			defer close(q)
			for {
				b := make([]byte, 64<<10)
				n, err := src.Read(b)
				if n > 0 {
					q <- chunk{time.Now().Add(oneWay), b[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer dst.Close() // the far end sees the close, after the data
			for c := range q {
				time.Sleep(time.Until(c.at))
				if _, err := dst.Write(c.b); err != nil {
					src.Close()
					return
				}
			}
		}()
	}
	delay(b1, a2)
	delay(a2, b1)
	return a1, b2
}

// windowOf reports a stream's receive window and what it holds unread.
func windowOf(s *Stream) (window uint32, buffered int) {
	s.recvLock.Lock()
	defer s.recvLock.Unlock()
	return s.window, s.recvBuf.Len()
}

// openPair opens a stream on client and accepts it on server: the client
// reads what the server's end sends, as the relay reads an agent's answer.
func openPair(t *testing.T, client, server *Session) (st, peer *Stream) {
	t.Helper()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	if peer, err = server.AcceptStream(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(peer, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	return st, peer
}

// flood writes to s until a write fails, and reports that error.
func flood(s *Stream) <-chan error {
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := s.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// readUntil reads s as fast as it can until its window is want, and fails
// the test if that takes more than limit bytes. It returns what it read.
func readUntil(t *testing.T, s *Stream, want uint32, limit int64) int64 {
	t.Helper()
	buf := make([]byte, 64<<10)
	var got int64
	for w, _ := windowOf(s); w != want; w, _ = windowOf(s) {
		if got > limit {
			t.Fatalf("window %d KiB after reading %d MiB, want %d KiB within %d MiB", w>>10, got>>20, want>>10, limit>>20)
		}
		n, err := s.Read(buf)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		got += int64(n)
	}
	return got
}

// A stream whose reader stops holds no more than its initial window, however
// much the peer tries to send: what the relay spends on a visitor who asks
// for a video and reads nothing, reads it slower than a window per few
// round trips, or reads it fast but slower than the agent sends.
func TestWindowStaysWhileReaderLags(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(*Stream) // how the reader reads for a second
	}{
		{"NeverReads", func(*Stream) { time.Sleep(time.Second) }},
		{"ReadsSlowly", func(s *Stream) {
			// 400 KB/s: growing would take a 160 ms round trip.
			buf := make([]byte, 4<<10)
			for i := 0; i < 100; i++ {
				if _, err := io.ReadFull(s, buf); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}},
		{"ReadsBehindSender", func(s *Stream) {
			// 32 MB/s, fast enough to grow by pace alone, but the peer
			// refills the window long before each read: the reader never
			// waits, so a larger window would only buffer more.
			buf := make([]byte, 64<<10)
			for i := 0; i < 250; i++ {
				if _, err := io.ReadFull(s, buf); err != nil {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c1, c2 := testConnTCP(t)
			client, server := testClientServerConfig(t, c1, c2, tuningConf(), tuningConf())
			st, peer := openPair(t, client, server)
			var wrote atomic.Int64
			werr := make(chan error, 1)
			go func() {
				// 64 MiB in one call, as a proxy copying a video would try.
				n, err := peer.Write(make([]byte, 64<<20))
				wrote.Store(int64(n))
				werr <- err
			}()
			tc.read(st)
			if w, buffered := windowOf(st); w != initialStreamWindow || buffered > int(initialStreamWindow) {
				t.Errorf("window %d KiB holding %d KiB, want %d KiB holding at most that", w>>10, buffered>>10, initialStreamWindow>>10)
			}
			select {
			case err := <-werr:
				t.Fatalf("the 64 MiB write ended (%v) after %d bytes", err, wrote.Load())
			default:
			}
			st.Reset()
			if err := <-werr; !errors.Is(err, ErrConnectionReset) {
				t.Errorf("write ended with %v, want %v", err, ErrConnectionReset)
			}
		})
	}
}

// A reader that keeps up with a sender held back by the window, over a path
// with a 100 ms round trip, has its window grown to the maximum, 16 MiB (more
// than 1 Gbit/s × 100 ms), within a bounded amount of data.
func TestWindowGrowsWithFastReader(t *testing.T) {
	conf := tuningConf()
	c1, c2 := testConnDelayed(t, 50*time.Millisecond)
	client, server := testClientServerConfig(t, c1, c2, conf, conf.Clone())
	st, peer := openPair(t, client, server)
	werr := flood(peer)
	got := readUntil(t, st, conf.MaxStreamWindowSize, 128<<20)
	t.Logf("window reached %d MiB after %d MiB read (RTT %v)", conf.MaxStreamWindowSize>>20, got>>20, time.Duration(client.rtt.Load()))
	st.Reset()
	<-werr
}

// A window that grew while its reader kept up shrinks back to the initial
// window once the reader falls behind the sender, and gives the budget back:
// a visitor whose player has buffered enough stops costing the relay the
// window it reached. (The largest window here is 2 MiB, so that the test
// reads little: the window halves every two window updates.)
func TestWindowShrinksWhenReaderFallsBehind(t *testing.T) {
	budget := &testBudget{limit: 64 << 20}
	conf := tuningConf()
	conf.MaxStreamWindowSize = 2 << 20
	conf.WindowBudget = budget
	c1, c2 := testConnDelayed(t, 50*time.Millisecond)
	client, server := testClientServerConfig(t, c1, c2, conf, tuningConf())
	st, peer := openPair(t, client, server)
	werr := flood(peer)
	readUntil(t, st, conf.MaxStreamWindowSize, 128<<20)
	if n := budget.inUse(); n == 0 {
		t.Fatal("the window grew without asking the budget")
	}
	// 2 MB/s: less than the initial window per round trip.
	buf := make([]byte, 64<<10)
	var got int64
	for w, _ := windowOf(st); w != initialStreamWindow; w, _ = windowOf(st) {
		if got > 16<<20 {
			t.Fatalf("window still %d KiB after %d MiB read behind the sender", w>>10, got>>20)
		}
		n, err := io.ReadFull(st, buf)
		if err != nil {
			t.Fatal(err)
		}
		got += int64(n)
		time.Sleep(30 * time.Millisecond)
	}
	if n := budget.inUse(); n != 0 {
		t.Errorf("budget has %d KiB in use with the window back at %d KiB, want 0", n>>10, initialStreamWindow>>10)
	}
	st.Reset()
	<-werr
}

// testBudget is a WindowBudget of limit bytes.
type testBudget struct {
	mu    sync.Mutex
	limit int
	used  int
}

func (b *testBudget) Reserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

func (b *testBudget) Release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

func (b *testBudget) inUse() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// A window grows only as far as the budget allows, the stream still moves
// data, and a stream that is reset, or whose session closes, gives back
// what it took.
func TestWindowBudget(t *testing.T) {
	budget := &testBudget{limit: int(initialStreamWindow)} // one doubling
	conf := tuningConf()
	conf.WindowBudget = budget
	c1, c2 := testConnDelayed(t, 50*time.Millisecond)
	client, server := testClientServerConfig(t, c1, c2, conf, tuningConf())

	first, firstPeer := openPair(t, client, server)
	firstDone := flood(firstPeer)
	readUntil(t, first, 2*initialStreamWindow, 64<<20)
	if n := budget.inUse(); n != int(initialStreamWindow) {
		t.Fatalf("budget has %d KiB in use, want %d", n>>10, initialStreamWindow>>10)
	}
	// The budget is spent: both streams move data, and what their windows
	// hold beyond the initial ones is what the budget granted, no more. (A
	// stream whose reader runs ahead of its sender may give its growth back
	// and the other take it.)
	second, secondPeer := openPair(t, client, server)
	secondDone := flood(secondPeer)
	for _, st := range []*Stream{first, second} {
		if _, err := io.CopyN(io.Discard, st, 16<<20); err != nil {
			t.Fatal(err)
		}
	}
	w1, _ := windowOf(first)
	w2, _ := windowOf(second)
	if grown := int(w1 + w2 - 2*initialStreamWindow); grown != budget.inUse() || grown > budget.limit {
		t.Errorf("windows %d and %d KiB with %d KiB of the budget in use, want them to have grown by what is in use, at most %d KiB",
			w1>>10, w2>>10, budget.inUse()>>10, budget.limit>>10)
	}

	first.Reset()
	<-firstDone
	w2, _ = windowOf(second)
	if n := budget.inUse(); n != int(w2-initialStreamWindow) {
		t.Fatalf("budget has %d KiB in use after the reset, want the second stream's %d", n>>10, (w2-initialStreamWindow)>>10)
	}
	readUntil(t, second, 2*initialStreamWindow, 64<<20)
	client.Close()
	<-secondDone
	if n := budget.inUse(); n != 0 {
		t.Errorf("budget has %d KiB in use after the session closed, want 0", n>>10)
	}
}

// A session whose windows grow measures its round-trip time at once, without
// waiting for a keepalive.
func TestRTTMeasuredAtStart(t *testing.T) {
	c1, c2 := testConnTCP(t)
	client, server := testClientServerConfig(t, c1, c2, tuningConf(), tuningConf())
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range []*Session{client, server} {
		for s.rtt.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no round-trip time 5 s after the session started")
			}
			time.Sleep(time.Millisecond)
		}
		if got := s.growthRTT(); got < minGrowthRTT {
			t.Errorf("windows grow by a %v round trip, want at least %v", got, minGrowthRTT)
		}
	}
}

func TestKeepsUp(t *testing.T) {
	const w, rtt = 1 << 20, 10 * time.Millisecond
	for _, tc := range []struct {
		consumed uint32
		elapsed  time.Duration
		want     bool
	}{
		{w / 2, rtt / 2, true},
		{w / 2, 9 * rtt / 10, true},
		{w / 2, rtt, false}, // half a window in one round trip is the limit
		{w, 19 * rtt / 10, true},
		{w, 2 * rtt, false},
		{w / 2, time.Since(time.Time{}), false}, // no update sent yet
	} {
		if got := keepsUp(tc.consumed, w, tc.elapsed, rtt); got != tc.want {
			t.Errorf("keepsUp(%d KiB of %d KiB in %v at %v RTT) = %v, want %v", tc.consumed>>10, w>>10, tc.elapsed, rtt, got, tc.want)
		}
	}
}

// A reader that takes a burst and then nothing (a proxy whose client filled
// its socket buffers and stopped) does not grow its window.
func TestWindowStaysAfterBurst(t *testing.T) {
	c1, c2 := testConnTCP(t)
	conf := testConfNoKeepAlive()
	conf.MaxStreamWindowSize = 16 << 20
	client, server := testClientServerConfig(t, c1, c2, conf, conf)
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	peer, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = peer.Write(make([]byte, 64<<20)) }()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(st, buf); err != nil {
		t.Fatal(err)
	}
	// The burst: a window and a half as fast as they come (more than a
	// stalled client's socket buffers take), then nothing.
	if _, err := io.ReadFull(st, make([]byte, 3*initialStreamWindow/2)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	st.recvLock.Lock()
	window := st.window
	st.recvLock.Unlock()
	if window != initialStreamWindow {
		t.Errorf("window %d KiB after a burst of a window and a half, want it to stay at %d KiB", window>>10, initialStreamWindow>>10)
	}
	st.Reset()
}

// TestFINAfterResetKeepsSession: the peer's FIN or data may cross the RST of
// a Reset, and the receive loop may have looked the stream up just before
// Reset took it out of the session's map. Neither is a protocol error: the
// session, and every other stream on it, goes on.
func TestFINAfterResetKeepsSession(t *testing.T) {
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
	if _, err := io.ReadFull(peer, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	if err := peer.Reset(); err != nil {
		t.Fatal(err)
	}
	// What the receive loop does with frames it took for this stream
	// before Reset removed it.
	if err := peer.processFlags(flagFIN); err != nil {
		t.Errorf("FIN after Reset: %v, want it ignored", err)
	}
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeData, flagFIN, peer.id, 5)
	if err := peer.readData(hdr, flagFIN, bytes.NewReader([]byte("hello"))); err != nil {
		t.Errorf("data and FIN after Reset: %v, want them dropped", err)
	}
	peer.recvLock.Lock()
	n := peer.recvBuf.Len()
	peer.recvLock.Unlock()
	if n != 0 {
		t.Errorf("a reset stream kept %d bytes that arrived after the reset", n)
	}
}

// A FIN that comes with data ends the stream after that data, here one
// whose own side was already closed: the data is kept for the reader, then
// EOF.
func TestDataWithFINIsKept(t *testing.T) {
	client, server := testClientServer(t)
	_, peer := openPair(t, client, server)
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeData, flagFIN, peer.id, 5)
	if err := peer.readData(hdr, flagFIN, bytes.NewReader([]byte("hello"))); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "hello" {
		t.Errorf("read %q, %v; want the frame's data, then EOF", got, err)
	}
}

// TestResetRacingPeerClose: a relay resets streams while agents close them
// (a visitor leaves just as its answer ends). The session outlives all of it.
func TestResetRacingPeerClose(t *testing.T) {
	client, server := testClientServer(t)
	for i := 0; i < 300; i++ {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if _, err := st.Write(make([]byte, 1000)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		peer, err := server.AcceptStream()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = peer.Write(make([]byte, 1000))
			_ = peer.Close()
		}()
		_ = st.Reset()
		<-done
	}
	if server.IsClosed() || client.IsClosed() {
		t.Fatal("a peer's close crossing a reset ended the session")
	}
}

// The round trip windows grow by is what an idle ping measured, lowered by
// any faster ping sent while data moved; a slower one, which waited behind
// queued data, does not count.
func TestRTTFromIdlePings(t *testing.T) {
	var s Session
	if got := s.growthRTT(); got != minGrowthRTT {
		t.Errorf("before any ping: %v, want the floor %v", got, minGrowthRTT)
	}
	s.recordRTT(60*time.Millisecond, false) // the first answer counts, busy or not
	s.recordRTT(40*time.Millisecond, true)
	for i := 0; i < 20; i++ {
		s.recordRTT(time.Duration(60+i)*time.Millisecond, false) // queued behind data
	}
	if got := s.growthRTT(); got != 40*time.Millisecond {
		t.Errorf("after an idle 40 ms ping and slower busy ones: %v, want 40ms", got)
	}
	s.recordRTT(35*time.Millisecond, false)
	if got := s.growthRTT(); got != 35*time.Millisecond {
		t.Errorf("after a faster busy ping: %v, want 35ms", got)
	}
	s.recordRTT(80*time.Millisecond, true) // the path got longer
	if got := s.growthRTT(); got != 80*time.Millisecond {
		t.Errorf("after an idle 80 ms ping: %v, want 80ms", got)
	}
	s.recordRTT(50*time.Microsecond, true) // loopback
	if got := s.growthRTT(); got != minGrowthRTT {
		t.Errorf("after a 50µs ping: %v, want the floor %v", got, minGrowthRTT)
	}
}

// Data frames are noted both ways, and a ping during which one moved, or just
// after one did, does not raise the estimate; one on a quiet session sets it.
func TestPingWhileDataMovesOnlyLowers(t *testing.T) {
	c1, c2 := testConnTCP(t)
	client, server := testClientServerConfig(t, c1, c2, testConfNoKeepAlive(), testConfNoKeepAlive())
	st, peer := openPair(t, client, server)
	if _, err := peer.Write(make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(st, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	if client.lastData.Load() == 0 || server.lastData.Load() == 0 {
		t.Fatalf("data frames noted: received %v, sent %v", client.lastData.Load() != 0, server.lastData.Load() != 0)
	}

	client.rtt.Store(int64(time.Nanosecond)) // lower than any real ping
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // data moving all through the ping
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				client.noteData()
				runtime.Gosched()
			}
		}
	}()
	_, err := client.Ping()
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(client.rtt.Load()); got != time.Nanosecond {
		t.Errorf("a ping while data moved set the estimate to %v", got)
	}
	// Nothing moves during this one, but data moved just before it.
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(client.rtt.Load()); got != time.Nanosecond {
		t.Errorf("a ping right after data moved set the estimate to %v", got)
	}
	// As if the last data frame had moved long ago.
	client.lastData.Store(int64(time.Since(client.born) - 2*quietBeforePing))
	if _, err := client.Ping(); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(client.rtt.Load()); got == time.Nanosecond {
		t.Error("an idle ping left the estimate where it was")
	}
}
