package yamux

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

type streamState int

const (
	streamInit streamState = iota
	streamSYNSent
	streamSYNReceived
	streamEstablished
	streamLocalClose
	streamRemoteClose
	streamClosed
	streamReset
)

// Stream is used to represent a logical stream
// within a session.
type Stream struct {
	recvWindow uint32
	sendWindow uint32

	id      uint32
	session *Session

	state     streamState
	stateLock sync.Mutex

	recvBuf  recvBuffer // Burrow: pooled chunks, see recvbuf.go
	recvLock sync.Mutex

	// Burrow: the receive window follows the reader. These fields are
	// guarded by recvLock, under which no other lock of the session is
	// taken; only the window budget is asked.
	//
	// window bounds what recvBuf and the peer's credit (recvWindow) hold
	// together. It starts at Config.InitialStreamWindowSize, grows while
	// the reader waits for data and shrinks while data waits for it.
	window uint32
	// epochStart is when the last window update went out.
	epochStart time.Time
	// consumed counts what the reader took in all (Burrow): a window grows
	// only once it passes growAfter.
	consumed uint64
	// starved is set when the reader found nothing to read since the
	// last window update (Burrow): only then can the window be what holds
	// the stream back. A reader that always finds data waiting is the
	// slower side, and a larger window would only buffer more.
	starved bool
	// calm counts the epochs in a row in which the reader never found the
	// stream empty (Burrow): the window shrinks after two. One alone may be
	// a burst that arrived while the reader was busy.
	calm int
	// reserved is what window took from Config.WindowBudget.
	reserved uint32
	// freed is set once the stream has left the session: its window is
	// given back and grows no more.
	freed bool
	// dropped is set once a reset has given the unread data back (Burrow):
	// what arrives later is discarded, not buffered for no reader.
	dropped bool

	controlHdr     header
	controlErr     chan error
	controlHdrLock sync.Mutex

	sendHdr  header
	sendErr  chan error
	sendLock sync.Mutex

	recvNotifyCh chan struct{}
	sendNotifyCh chan struct{}

	readDeadline  atomic.Value // time.Time
	writeDeadline atomic.Value // time.Time

	// establishCh is notified if the stream is established or being closed.
	establishCh chan struct{}

	// closeTimer is set with stateLock held to honor the StreamCloseTimeout
	// setting on Session.
	closeTimer *time.Timer
}

// newStream is used to construct a new stream within
// a given session for an ID
func newStream(session *Session, id uint32, state streamState) *Stream {
	s := &Stream{
		id:           id,
		session:      session,
		state:        state,
		controlHdr:   header(make([]byte, headerSize)),
		controlErr:   make(chan error, 1),
		sendHdr:      header(make([]byte, headerSize)),
		sendErr:      make(chan error, 1),
		recvWindow:   initialStreamWindow,
		sendWindow:   initialStreamWindow,
		window:       session.config.initialWindow(),
		recvNotifyCh: make(chan struct{}, 1),
		sendNotifyCh: make(chan struct{}, 1),
		establishCh:  make(chan struct{}, 1),
	}
	s.readDeadline.Store(time.Time{})
	s.writeDeadline.Store(time.Time{})
	return s
}

// Session returns the associated stream session
func (s *Stream) Session() *Session {
	return s.session
}

// StreamID returns the ID of this stream
func (s *Stream) StreamID() uint32 {
	return s.id
}

// Read is used to read from the stream
func (s *Stream) Read(b []byte) (n int, err error) {
	defer asyncNotify(s.recvNotifyCh)
START:

	// If the stream is closed and there's no data buffered, return EOF
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		// LocalClose only prohibits further local writes. Handle reads normally.
	case streamRemoteClose:
		fallthrough
	case streamClosed:
		s.recvLock.Lock()
		if s.recvBuf.Len() == 0 {
			s.recvLock.Unlock()
			s.stateLock.Unlock()
			return 0, io.EOF
		}
		s.recvLock.Unlock()
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	s.recvLock.Lock()
	if s.recvBuf.Len() == 0 {
		s.starved = true // Burrow: see growWindowLocked
		s.recvLock.Unlock()
		goto WAIT
	}

	// Read any bytes
	n = s.recvBuf.Read(b)
	s.recvLock.Unlock()

	// Send a window update potentially
	err = s.sendWindowUpdate()
	if err == ErrSessionShutdown {
		err = nil
	}
	return n, err

WAIT:
	var timeout <-chan time.Time
	var timer *time.Timer
	readDeadline := s.readDeadline.Load().(time.Time)
	if !readDeadline.IsZero() {
		delay := time.Until(readDeadline)
		timer = time.NewTimer(delay)
		timeout = timer.C
	}
	select {
	case <-s.session.shutdownCh:
	case <-s.recvNotifyCh:
	case <-timeout:
		return 0, ErrTimeout
	}
	if timer != nil {
		if !timer.Stop() {
			<-timeout
		}
	}
	goto START
}

// Write is used to write to the stream
func (s *Stream) Write(b []byte) (n int, err error) {
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	total := 0
	for total < len(b) {
		n, err := s.write(b[total:])
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// write is used to write to the stream, may return on
// a short write.
func (s *Stream) write(b []byte) (n int, err error) {
	var flags uint16
	var max uint32
	var body []byte
START:
	s.stateLock.Lock()
	switch s.state {
	case streamLocalClose:
		fallthrough
	case streamClosed:
		s.stateLock.Unlock()
		return 0, ErrStreamClosed
	case streamReset:
		s.stateLock.Unlock()
		return 0, ErrConnectionReset
	}
	s.stateLock.Unlock()

	// If there is no data available, block
	window := atomic.LoadUint32(&s.sendWindow)
	if window == 0 {
		goto WAIT
	}

	// Determine the flags if any
	flags = s.sendFlags()

	// Send up to our send window
	max = min(window, uint32(len(b)))
	body = b[:max]

	// Send the header
	s.sendHdr.encode(typeData, flags, s.id, max)
	if max > 0 {
		s.session.noteData() // Burrow: see recordRTT
	}
	if err = s.session.waitForSendErr(s.sendHdr, body, s.sendErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.sendHdr = header(make([]byte, headerSize))
		}
		return 0, err
	}

	// Reduce our send window
	atomic.AddUint32(&s.sendWindow, ^uint32(max-1))

	// Unlock
	return int(max), err

WAIT:
	var timeout <-chan time.Time
	var timer *time.Timer
	writeDeadline := s.writeDeadline.Load().(time.Time)
	if !writeDeadline.IsZero() {
		delay := time.Until(writeDeadline)
		timer = time.NewTimer(delay)
		timeout = timer.C
	}
	select {
	case <-s.session.shutdownCh:
	case <-s.sendNotifyCh:
	case <-timeout:
		return 0, ErrTimeout
	}
	if timer != nil {
		if !timer.Stop() {
			<-timeout
		}
	}
	goto START
}

// sendFlags determines any flags that are appropriate
// based on the current stream state
func (s *Stream) sendFlags() uint16 {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()
	var flags uint16
	switch s.state {
	case streamInit:
		flags |= flagSYN
		s.state = streamSYNSent
	case streamSYNReceived:
		flags |= flagACK
		s.state = streamEstablished
	}
	return flags
}

// sendWindowUpdate potentially sends a window update enabling
// further writes to take place. Must be invoked with the lock.
func (s *Stream) sendWindowUpdate() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	// Determine the flags if any. Burrow: before taking recvLock, which
	// upstream held here, against Read's order (stateLock, then recvLock).
	flags := s.sendFlags()

	// Determine the delta update: what the reader consumed since the last
	// one. Burrow: up to the stream's window rather than the session's
	// maximum.
	var bufLen uint32
	s.recvLock.Lock()
	bufLen = uint32(s.recvBuf.Len())
	delta := s.creditLocked(bufLen)

	// Check if we can omit the update
	if delta < (s.window/2) && flags == 0 {
		s.recvLock.Unlock()
		return nil
	}

	// Burrow: a window the reader waits on grows; one it never waited on
	// shrinks. The SYN and ACK updates only start the first epoch.
	now := time.Now()
	if flags == 0 {
		s.consumed += uint64(delta)
		if s.starved {
			s.calm = 0
			delta += s.growWindowLocked(delta, now.Sub(s.epochStart))
		} else if s.calm++; s.calm >= 2 && s.shrinkWindowLocked() > 0 {
			s.calm = 0
			delta = s.creditLocked(bufLen)
		}
	}
	s.epochStart = now
	s.starved = false
	if delta == 0 && flags == 0 {
		s.recvLock.Unlock()
		return nil
	}

	// Update our window
	s.recvWindow += delta
	s.recvLock.Unlock()

	// Send the header
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, delta)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
		}
		return err
	}
	return nil
}

// creditLocked is what the peer may be granted now: the window less what is
// buffered (bufLen) and already granted. A window that shrank may be below
// that; then there is nothing to grant. (Burrow)
func (s *Stream) creditLocked(bufLen uint32) uint32 {
	if held := bufLen + s.recvWindow; held < s.window {
		return s.window - held
	}
	return 0
}

// growthRTTs is how many round trips a reader may take to consume a window
// that still grows (Burrow): a window-limited stream moves one window per
// round trip, so a reader at half that pace or more is held back by the
// window, not by itself. (At 4, with a 10 ms least round trip, a stream on
// loopback grew to the largest window at any pace above about 200 MB/s,
// whether or not the window held it back.)
const growthRTTs = 2

// growAfter is how many initial windows a reader must have taken before its
// window grows (Burrow). A reader that forwards to a client that has stopped
// reading takes what the client's socket buffers hold, fast, and then
// nothing: that burst is not a reader keeping up.
const growAfter = 2

// growWindowLocked doubles the receive window, up to MaxStreamWindowSize, if
// the reader consumed a window's worth at the pace of growthRTTs round trips
// or faster: here consumed bytes, at least half the window, in elapsed. It
// asks the budget first and returns the growth. (Burrow)
//
// sendWindowUpdate calls it only after an epoch in which the reader found
// the stream empty (starved): a window is worth growing only while the
// reader waits for the data it allows. A reader slower than the sender
// always finds data waiting, and a larger window would only hold more of it
// unread: a relay whose visitor reads at 50 MB/s from an agent that sends
// at 500 MB/s would otherwise buffer the largest window for every such
// download.
func (s *Stream) growWindowLocked(consumed uint32, elapsed time.Duration) uint32 {
	limit := s.session.config.MaxStreamWindowSize
	if s.freed || !s.starved || s.window >= limit || s.consumed < growAfter*uint64(s.session.config.initialWindow()) ||
		!keepsUp(consumed, s.window, elapsed, s.session.growthRTT()) {
		return 0
	}
	grow := min(s.window, limit-s.window)
	if b := s.session.config.WindowBudget; b != nil {
		if !b.Reserve(int(grow)) {
			return 0
		}
		s.reserved += grow
	}
	s.window += grow
	return grow
}

// shrinkWindowLocked halves the receive window, down to the initial one,
// and gives what it frees back to the budget; it returns by how much it
// shrank. sendWindowUpdate calls it after two epochs in a row in which the
// reader never found the stream empty (one may be a burst that arrived
// while the reader was busy): the data was waiting for the reader, not the
// reader for the data, so half the window would have done as well. A relay
// whose visitor slows down (a video player that has buffered enough, a
// seek read at playback speed) stops holding a large window of it unread;
// should the reader wait again, the window grows again. (Burrow)
func (s *Stream) shrinkWindowLocked() uint32 {
	initial := s.session.config.initialWindow()
	if s.window <= initial {
		return 0
	}
	shrink := min(s.window/2, s.window-initial)
	s.window -= shrink
	if give := min(shrink, s.reserved); give > 0 {
		s.reserved -= give
		s.session.config.WindowBudget.Release(int(give))
	}
	return shrink
}

// keepsUp reports whether a reader that consumed bytes of a window in
// elapsed time reads a window in fewer than growthRTTs round trips. (Burrow)
func keepsUp(consumed, window uint32, elapsed, rtt time.Duration) bool {
	return float64(elapsed)*float64(window) < growthRTTs*float64(rtt)*float64(consumed)
}

// releaseWindow gives back what the window took from the budget; the window
// grows no more. The session calls it when it frees the stream. (Burrow)
func (s *Stream) releaseWindow() {
	s.recvLock.Lock()
	defer s.recvLock.Unlock()
	s.freed = true
	if s.reserved > 0 {
		s.session.config.WindowBudget.Release(int(s.reserved))
		s.reserved = 0
	}
}

// sendClose is used to send a FIN
func (s *Stream) sendClose() error {
	s.controlHdrLock.Lock()
	defer s.controlHdrLock.Unlock()

	flags := s.sendFlags()
	flags |= flagFIN
	s.controlHdr.encode(typeWindowUpdate, flags, s.id, 0)
	if err := s.session.waitForSendErr(s.controlHdr, nil, s.controlErr); err != nil {
		if errors.Is(err, ErrSessionShutdown) || errors.Is(err, ErrConnectionWriteTimeout) {
			// Message left in ready queue, header re-use is unsafe.
			s.controlHdr = header(make([]byte, headerSize))
		}
		return err
	}
	return nil
}

// Close is used to close the stream
func (s *Stream) Close() error {
	closeStream := false
	s.stateLock.Lock()
	switch s.state {
	// Opened means we need to signal a close
	case streamSYNSent:
		fallthrough
	case streamSYNReceived:
		fallthrough
	case streamEstablished:
		s.state = streamLocalClose
		goto SEND_CLOSE

	case streamLocalClose:
	case streamRemoteClose:
		s.state = streamClosed
		closeStream = true
		goto SEND_CLOSE

	case streamClosed:
	case streamReset:
	default:
		panic("unhandled state")
	}
	s.stateLock.Unlock()
	return nil
SEND_CLOSE:
	// This shouldn't happen (the more realistic scenario to cancel the
	// timer is via processFlags) but just in case this ever happens, we
	// cancel the timer to prevent dangling timers.
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}

	// If we have a StreamCloseTimeout set we start the timeout timer.
	// We do this only if we're not already closing the stream since that
	// means this was a graceful close.
	//
	// This prevents memory leaks if one side (this side) closes and the
	// remote side poorly behaves and never responds with a FIN to complete
	// the close. After the specified timeout, we clean our resources up no
	// matter what.
	if !closeStream && s.session.config.StreamCloseTimeout > 0 {
		s.closeTimer = time.AfterFunc(
			s.session.config.StreamCloseTimeout, s.closeTimeout)
	}

	s.stateLock.Unlock()
	s.sendClose()
	s.notifyWaiting()
	if closeStream {
		s.session.closeStream(s.id)
	}
	return nil
}

// CloseWrite half-closes the stream: it sends FIN like Close, but never arms
// the StreamCloseTimeout reset, so the stream stays readable until the peer
// ends its side, however long that takes. (Burrow: a half-closed request
// whose answer is a two-hour video.) A later Close after CloseWrite sends
// nothing more, as after Close.
func (s *Stream) CloseWrite() error {
	s.stateLock.Lock()
	switch s.state {
	case streamSYNSent, streamSYNReceived, streamEstablished:
		s.state = streamLocalClose
	case streamRemoteClose:
		s.stateLock.Unlock()
		return s.Close()
	default:
		s.stateLock.Unlock()
		return nil
	}
	s.stateLock.Unlock()
	err := s.sendClose()
	s.notifyWaiting()
	return err
}

// Reset ends the stream at once in both directions: it sends RST, frees the
// stream, and fails this side's waiting reads and writes. The peer's reads
// and writes fail as soon as the RST arrives, and what either side had not
// read yet is dropped. It is the stream reset that upstream yamux only sends
// from its close timer. (Burrow: a viewer seeks away and the agent must stop
// pushing the abandoned video through the tunnel now.)
func (s *Stream) Reset() error {
	s.stateLock.Lock()
	switch s.state {
	case streamClosed, streamReset:
		s.stateLock.Unlock()
		return nil
	}
	if s.closeTimer != nil {
		s.closeTimer.Stop()
		s.closeTimer = nil
	}
	s.state = streamReset
	s.stateLock.Unlock()
	s.dropUnread()
	s.notifyWaiting()
	s.session.closeStream(s.id)

	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, s.id, 0)
	return s.session.sendNoWait(hdr)
}

// dropUnread gives back the chunks of data that no Read will return: a
// reset stream's Read fails at once. (Burrow)
func (s *Stream) dropUnread() {
	s.recvLock.Lock()
	s.recvBuf.release()
	s.dropped = true
	s.recvLock.Unlock()
}

// closeTimeout is called after StreamCloseTimeout during a close to
// close this stream.
func (s *Stream) closeTimeout() {
	// Close our side forcibly
	s.forceClose()

	// Free the stream from the session map
	s.session.closeStream(s.id)

	// Send a RST so the remote side closes too.
	s.sendLock.Lock()
	defer s.sendLock.Unlock()
	hdr := header(make([]byte, headerSize))
	hdr.encode(typeWindowUpdate, flagRST, s.id, 0)
	_ = s.session.sendNoWait(hdr)
}

// forceClose is used for when the session is exiting
func (s *Stream) forceClose() {
	s.stateLock.Lock()
	s.state = streamClosed
	s.stateLock.Unlock()
	s.notifyWaiting()
}

// processFlags is used to update the state of the stream
// based on set flags, if any. Lock must be held
func (s *Stream) processFlags(flags uint16) error {
	s.stateLock.Lock()
	defer s.stateLock.Unlock()

	// Close the stream without holding the state lock
	closeStream := false
	defer func() {
		if closeStream {
			if s.closeTimer != nil {
				// Stop our close timeout timer since we gracefully closed
				s.closeTimer.Stop()
			}

			s.session.closeStream(s.id)
		}
	}()

	if flags&flagACK == flagACK {
		if s.state == streamSYNSent {
			s.state = streamEstablished
		}
		asyncNotify(s.establishCh)
		s.session.establishStream(s.id)
	}
	if flags&flagFIN == flagFIN {
		switch s.state {
		case streamSYNSent:
			fallthrough
		case streamSYNReceived:
			fallthrough
		case streamEstablished:
			s.state = streamRemoteClose
			s.notifyWaiting()
		case streamLocalClose:
			s.state = streamClosed
			closeStream = true
			s.notifyWaiting()
		case streamReset, streamClosed:
			// Burrow: the stream ended here (Reset, or the close timer)
			// while the peer's FIN was on its way, or after the receive
			// loop had looked the stream up. The FIN crossed our RST; it
			// is not a protocol error that ends every stream of the session.
		default:
			s.session.logger.Printf("[ERR] yamux: unexpected FIN flag in state %d", s.state)
			return ErrUnexpectedFlag
		}
	}
	if flags&flagRST == flagRST {
		s.state = streamReset
		s.dropUnread()
		closeStream = true
		s.notifyWaiting()
	}
	return nil
}

// notifyWaiting notifies all the waiting channels
func (s *Stream) notifyWaiting() {
	asyncNotify(s.recvNotifyCh)
	asyncNotify(s.sendNotifyCh)
	asyncNotify(s.establishCh)
}

// incrSendWindow updates the size of our send window
func (s *Stream) incrSendWindow(hdr header, flags uint16) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Increase window, unblock a sender
	atomic.AddUint32(&s.sendWindow, hdr.Length())
	asyncNotify(s.sendNotifyCh)
	return nil
}

// readData is used to handle a data frame
func (s *Stream) readData(hdr header, flags uint16, conn io.Reader) error {
	if err := s.processFlags(flags); err != nil {
		return err
	}

	// Check that our recv window is not exceeded
	length := hdr.Length()
	if length == 0 {
		return nil
	}
	// Copy into buffer
	s.recvLock.Lock()
	if s.dropped {
		// Burrow: the data crossed our RST, or came with the peer's: no
		// reader will take it, so it is not kept in chunks. (A FIN that
		// comes with data ends the stream after that data, which is kept.)
		s.recvLock.Unlock()
		_, err := io.CopyN(io.Discard, conn, int64(length))
		return err
	}

	if length > s.recvWindow {
		s.session.logger.Printf("[ERR] yamux: receive window exceeded (stream: %d, remain: %d, recv: %d)", s.id, s.recvWindow, length)
		s.recvLock.Unlock()
		return ErrRecvWindowExceeded
	}

	// Burrow: into pooled chunks rather than a bytes.Buffer (recvbuf.go).
	copiedLength, err := s.recvBuf.readFrom(conn, int(length))
	if err != nil {
		s.session.logger.Printf("[ERR] yamux: Failed to read stream data: %v", err)
		s.recvLock.Unlock()
		return err
	}

	// Decrement the receive window
	s.recvWindow -= uint32(copiedLength)
	s.recvLock.Unlock()

	// Unblock any readers
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetDeadline sets the read and write deadlines
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	if err := s.SetWriteDeadline(t); err != nil {
		return err
	}
	return nil
}

// SetReadDeadline sets the deadline for blocked and future Read calls.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.readDeadline.Store(t)
	asyncNotify(s.recvNotifyCh)
	return nil
}

// SetWriteDeadline sets the deadline for blocked and future Write calls
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.writeDeadline.Store(t)
	asyncNotify(s.sendNotifyCh)
	return nil
}

// Shrink is used to compact the amount of buffers utilized
// This is useful when using Yamux in a connection pool to reduce
// the idle memory utilization.
func (s *Stream) Shrink() {
	s.recvLock.Lock()
	if s.recvBuf.Len() == 0 {
		s.recvBuf.release()
	}
	s.recvLock.Unlock()
}
