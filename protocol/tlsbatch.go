package protocol

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
	"syscall"
)

// tcpBufferSize is the size of the read and write buffers under TLS on the TCP transport.
const tcpBufferSize = 256 << 10

// batchConn sits between TLS and the TCP socket. TLS writes a 16 KiB record
// at a time and reads one record at a time; without it every record is one
// syscall, about half of the transport's CPU. It reads the socket in large
// chunks, and once batching is on (after the handshake) it gathers the
// records of one TLS write, flushed by tlsBatch, into one syscall.
type batchConn struct {
	net.Conn
	r *bufio.Reader // only TLS's reader reads

	mu       sync.Mutex
	w        *bufio.Writer // guarded by mu
	batching bool          // guarded by mu
}

func newBatchConn(c net.Conn) *batchConn {
	limitUnsent(c)
	return &batchConn{Conn: c, r: bufio.NewReaderSize(c, tcpBufferSize), w: bufio.NewWriterSize(c, tcpBufferSize)}
}

func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(p)
	}
	return c.w.Write(p)
}

func (c *batchConn) startBatching() {
	c.mu.Lock()
	c.batching = true
	c.mu.Unlock()
}

func (c *batchConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Flush()
}

// tlsBatch is the connection yamux runs on: each Write is one TLS write,
// sent with one syscall, except a data frame's header, which it holds back
// until the frame's body comes.
type tlsBatch struct {
	*tls.Conn
	raw *batchConn

	mu  sync.Mutex
	hdr []byte // a held data-frame header; guarded by mu
	buf []byte // header and small body, written as one record; guarded by mu
}

// newTLSBatch wraps a TLS connection made over raw after its handshake.
func newTLSBatch(tc *tls.Conn, raw *batchConn) *tlsBatch {
	raw.startBatching()
	return &tlsBatch{Conn: tc, raw: raw}
}

// yamux's send loop writes each data frame as two writes: the 12-byte header
// (version 0, type 0, flags, stream id, body length), then the body. Sent as
// they come, a small frame (an HTTP request or a small answer) costs two TLS
// records and two syscalls.
const (
	yamuxHeaderSize = 12
	// smallFrameBody is the largest body sent in one TLS record with its
	// header; larger bodies follow the header in records of their own.
	smallFrameBody = 16<<10 - yamuxHeaderSize
)

func isYamuxDataHeader(p []byte) bool {
	return len(p) == yamuxHeaderSize && p[0] == 0 && p[1] == 0 && binary.BigEndian.Uint32(p[8:]) > 0
}

func (t *tlsBatch) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.hdr) == 0 && isYamuxDataHeader(p) {
		t.hdr = append(t.hdr[:0], p...)
		return len(p), nil
	}
	var err error
	switch {
	case len(t.hdr) == 0:
		_, err = t.Conn.Write(p)
	case len(p) <= smallFrameBody:
		t.buf = append(append(t.buf[:0], t.hdr...), p...)
		_, err = t.Conn.Write(t.buf)
	default:
		if _, err = t.Conn.Write(t.hdr); err == nil {
			_, err = t.Conn.Write(p)
		}
	}
	t.hdr = t.hdr[:0]
	if ferr := t.raw.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close closes the socket at once: yamux calls it to unblock a write stuck
// on a peer that stopped reading, so it must not wait for a TLS alert.
func (t *tlsBatch) Close() error { return t.raw.Conn.Close() }

// tunnelUnsent is the most a tunnel socket holds that it has not sent yet
// (TCP_NOTSENT_LOWAT); the rest waits in its stream. Without the cap the
// kernel takes megabytes of one stream's data (its send buffer grows to
// tcp_wmem's maximum), and everything sent after it waits behind them: a
// video player's seek aborts the playing answer, and the new one waited for
// the old one's queued bytes. Data already sent, in the network and the
// relay's buffers, still goes first.
//
// Measured one download over 40 ms RTT / 200 Mbit/s (seek time to first
// byte) and over 80 ms / 0.5 % loss with BBR (share of the link):
// no cap 202–234 ms, 67 %; 1 MiB 137 ms, 65 %; 128 KiB 112–126 ms, 58 %.
// A small cap starves BBR after losses; 1 MiB keeps most of both.
const tunnelUnsent = 1 << 20

// limitUnsent applies tunnelUnsent to a tunnel's TCP socket.
func limitUnsent(c net.Conn) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = setNotSentLowat(fd, tunnelUnsent) })
}
