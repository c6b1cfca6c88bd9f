package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

const (
	serviceDialTimeout = 10 * time.Second
	copyBufferSize     = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// serveStream reads a stream's header, dials the route's service and copies
// bytes both ways until both directions are done.
func (a *Agent) serveStream(ctx context.Context, log *slog.Logger, routes map[uint32]*liveRoute, st protocol.Stream) {
	defer st.Close()
	_ = st.SetReadDeadline(time.Now().Add(protocol.HandshakeTimeout))
	hdr, err := protocol.ReadStreamHeader(st)
	if err != nil {
		log.Debug("bad stream header", "err", err)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	rt := routes[hdr.RouteID]
	if rt == nil {
		_ = protocol.WriteStatus(st, protocol.StatusUnknownRoute, "no route with this id")
		return
	}
	if _, err := rt.guard.check(ctx); err != nil {
		if rt.guard.warnOnce() {
			log.Error("request refused", "host", rt.Host, "reason", err)
		}
		_ = protocol.WriteStatus(st, protocol.StatusRefused, "Stash has no login")
		return
	}
	d := net.Dialer{Timeout: serviceDialTimeout, KeepAlive: 30 * time.Second}
	svc, err := d.DialContext(ctx, "tcp", rt.addr)
	if err != nil {
		log.Warn("service unreachable", "host", rt.Host, "service", rt.Service, "err", err)
		_ = protocol.WriteStatus(st, protocol.StatusServiceUnreachable, rt.Service+": "+err.Error())
		return
	}
	defer svc.Close()
	if err := protocol.WriteStatus(st, protocol.StatusOK, ""); err != nil {
		return
	}
	// Stop at once when the session ends.
	stop := context.AfterFunc(ctx, func() { st.Close(); svc.Close() })
	defer stop()
	join(st, svc.(*net.TCPConn))
}

// halfCloser is a connection whose write side can be closed alone.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// join copies a→b and b→a with pooled buffers. EOF on one side is passed on as
// a half-close; an error on either side closes both.
func join(a, b halfCloser) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src halfCloser) {
		defer wg.Done()
		_, err := copyAdaptive(dst, src)
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

// copyAdaptive copies src to dst until EOF (returning nil) or an error. It
// waits for data with a small buffer and moves to a large pooled one while
// reads keep filling the buffer: a bulk transfer (a video) moves in 64 KiB
// reads, while thousands of idle WebSockets hold 4 KiB each instead of 64.
func copyAdaptive(dst io.Writer, src io.Reader) (int64, error) {
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
