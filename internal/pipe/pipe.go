// Package pipe copies bytes between two connections, both ways, with pooled
// buffers sized to the traffic: the agent joins each tunnel stream to its
// service, and the relay each upgraded (WebSocket) connection to its stream.
package pipe

import (
	"errors"
	"io"
	"net"
	"sync"
)

// LargeBufferSize is the buffer a bulk transfer moves with. Each read and
// each write of a video costs a syscall and a wake-up on both sides of the
// tunnel, and a tunnel stream write is one frame: 256 KiB moves a GiB over TCP
// with 3.5–4.4 CPU-seconds for relay and agent, against 5.9–6.2 with 64 KiB
// (1 MiB saves nothing more; `make bench`, scenario 1).
const LargeBufferSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, LargeBufferSize); return &b }}

// HalfCloser is a connection whose write side can be closed alone.
type HalfCloser interface {
	net.Conn
	CloseWrite() error
}

// Join copies a→b and b→a with pooled buffers. EOF on one side is passed on as
// a half-close; an error on either side closes both.
func Join(a, b HalfCloser) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src HalfCloser) {
		defer wg.Done()
		_, err := Copy(dst, src)
		if err == nil || errors.Is(err, io.EOF) {
			_ = dst.CloseWrite()
			return
		}
		a.Close()
		b.Close()
	}
	go pipe(a, b)
	pipe(b, a)
	wg.Wait()
}

// smallBufferSize is the buffer an idle or chatty connection waits with.
const smallBufferSize = 4 << 10

var smallPool = sync.Pool{New: func() any { b := make([]byte, smallBufferSize); return &b }}

// Copy copies src to dst until EOF (returning nil) or an error. It
// waits for data with a small buffer and moves to a large pooled one while
// reads keep filling the buffer: a bulk transfer (a video) moves in 256 KiB
// reads, while thousands of idle WebSockets hold 4 KiB each instead of 64.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	small := smallPool.Get().(*[]byte)
	defer smallPool.Put(small)
	var big *[]byte
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
	}()
	buf := *small
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if werr != nil {
				return written, werr
			}
			if w != n {
				return written, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
		switch {
		case big == nil && n == len(buf):
			big = bufPool.Get().(*[]byte)
			buf = *big
		case big != nil && n < smallBufferSize:
			// The flow has slowed to a trickle: wait with the small buffer.
			bufPool.Put(big)
			big, buf = nil, *small
		}
	}
}

// BufferPool lends the large buffers to httputil.ReverseProxy.
type BufferPool struct{}

// Get returns a LargeBufferSize buffer.
func (BufferPool) Get() []byte { return *bufPool.Get().(*[]byte) }

// Put returns a buffer from Get.
func (BufferPool) Put(b []byte) { bufPool.Put(&b) }
