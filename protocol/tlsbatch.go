package protocol

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
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
// sent with one syscall.
type tlsBatch struct {
	*tls.Conn
	raw *batchConn
}

// newTLSBatch wraps a TLS connection made over raw after its handshake.
func newTLSBatch(tc *tls.Conn, raw *batchConn) *tlsBatch {
	raw.startBatching()
	return &tlsBatch{Conn: tc, raw: raw}
}

func (t *tlsBatch) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	if ferr := t.raw.flush(); err == nil {
		err = ferr
	}
	return n, err
}

// Close closes the socket at once: yamux calls it to unblock a write stuck
// on a peer that stopped reading, so it must not wait for a TLS alert.
func (t *tlsBatch) Close() error { return t.raw.Conn.Close() }
