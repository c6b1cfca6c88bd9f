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

// LargeBufferSize is the buffer an established bulk transfer moves with.
// Each read and each write of a video costs a syscall and a wake-up on both
// sides of the tunnel, and a tunnel stream write is one frame: 256 KiB moves
// a GiB over TCP with 3.5–4.4 CPU-seconds for relay and agent, against
// 5.9–6.2 with 64 KiB (1 MiB saves nothing more; `make bench`, scenario 1).
const LargeBufferSize = 256 << 10

// mediumBufferSize is the buffer a transfer moves with until it has proved
// long: a thousand concurrent 1 MiB answers then hold 64 KiB each, not 256.
const mediumBufferSize = 64 << 10

// bulkAfter is how much a transfer moves in one run, from when it filled its
// small buffer, before it gets a large one: a WebSocket that has moved 1 MiB
// over hours does not get 256 KiB for its next burst.
const bulkAfter = 1 << 20

var (
	bufPool    = sync.Pool{New: func() any { b := make([]byte, LargeBufferSize); return &b }}
	mediumPool = sync.Pool{New: func() any { b := make([]byte, mediumBufferSize); return &b }}
)

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

// Copy copies src to dst until EOF (returning nil) or an error. It waits
// for data with a small buffer and moves to larger pooled ones while reads
// keep filling the buffer: a video moves in 256 KiB reads once it has moved
// 1 MiB, a short answer in 64 KiB ones, and thousands of idle WebSockets hold
// 4 KiB each.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	small := smallPool.Get().(*[]byte)
	defer smallPool.Put(small)
	var lent *[]byte // the pooled buffer in use, from pool
	var pool *sync.Pool
	giveBack := func() {
		if lent != nil {
			pool.Put(lent)
			lent, pool = nil, nil
		}
	}
	defer giveBack()
	buf := *small
	var written int64
	var run int64 // moved since the flow last picked up from a trickle
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			run += int64(w)
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
		case n < smallBufferSize && lent != nil:
			// The flow has slowed to a trickle: wait with the small buffer.
			giveBack()
			buf = *small
		case n == len(buf) && lent == nil:
			lent, pool = mediumPool.Get().(*[]byte), &mediumPool
			buf = *lent
			run = 0
		case n == len(buf) && pool == &mediumPool && run >= bulkAfter:
			giveBack()
			lent, pool = bufPool.Get().(*[]byte), &bufPool
			buf = *lent
		}
	}
}

// BufferPool lends 64 KiB buffers to httputil.ReverseProxy, which holds one
// for a whole answer. On the relay larger ones cost memory and save no CPU:
// the agent's writes set the frame size (scenario 1: 4.0–4.2 CPU-s/GiB with
// 64 KiB, 4.0 with 256 KiB).
type BufferPool struct{}

// Get returns a 64 KiB buffer.
func (BufferPool) Get() []byte { return *mediumPool.Get().(*[]byte) }

// Put returns a buffer from Get.
func (BufferPool) Put(b []byte) { mediumPool.Put(&b) }
