package protocol

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groReadSize holds the largest datagram UDP GRO delivers (64 KiB).
const groReadSize = 1 << 16

// groConn is a UDP socket with UDP_GRO on: the kernel hands over a train of
// same-sized datagrams from one sender in one read, with their segment size
// in a control message, and ReadBatch splits it into the datagrams quic-go
// expects. A QUIC peer sending with GSO (as quic-go does on Linux) arrives as
// one read per burst instead of one per 1,452-byte packet, and on loopback
// the kernel no longer cuts the burst up at all.
//
// Everything else, including the GSO writes, is the plain *net.UDPConn.
// quic-go uses ReadBatch because groConn implements its batchConn interface.
type groConn struct {
	*net.UDPConn

	rbuf, roob []byte // read buffers

	buf []byte // the last read; its datagrams from off on are pending
	off int
	seg int    // their size; 0 when the read was one plain datagram
	oob []byte // their control messages, without UDP_GRO's
	// from is shared by every datagram of one read: they have one sender.
	from *net.UDPAddr
}

// withGRO turns on UDP_GRO and returns the socket wrapped for quic-go, or
// the socket itself when the kernel lacks GRO (before Linux 5.0).
func withGRO(pc net.PacketConn) net.PacketConn {
	c, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return c
	}
	return &groConn{
		UDPConn: c,
		rbuf:    make([]byte, groReadSize),
		roob:    make([]byte, 1024),
	}
}

// ReadBatch fills ms with the datagrams of the pending read, or of a new one
// when none is pending. It blocks until at least one datagram is there, and
// honours the socket's read deadline.
func (c *groConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if c.off >= len(c.buf) {
		if err := c.read(); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(ms) && c.off < len(c.buf) {
		end := len(c.buf)
		if c.seg > 0 && c.off+c.seg < end {
			end = c.off + c.seg
		}
		m := &ms[n]
		if len(m.Buffers) == 0 {
			return n, errors.New("protocol: ReadBatch needs a buffer per message")
		}
		m.N = copy(m.Buffers[0], c.buf[c.off:end])
		m.NN = copy(m.OOB, c.oob)
		m.Flags = 0
		if m.N < end-c.off {
			m.Flags = unix.MSG_TRUNC
		}
		m.Addr = c.from
		c.off = end
		n++
	}
	return n, nil
}

// read waits for the next datagram (or train of them).
func (c *groConn) read() error {
	for {
		n, oobn, flags, ap, err := c.ReadMsgUDPAddrPort(c.rbuf, c.roob)
		if err != nil {
			return err
		}
		if n == 0 && flags&unix.MSG_TRUNC == 0 {
			continue
		}
		c.buf, c.off = c.rbuf[:n], 0
		c.seg, c.oob = splitGRO(c.roob[:oobn])
		c.from = net.UDPAddrFromAddrPort(ap)
		return nil
	}
}

// splitGRO takes the UDP_GRO control message out of oob: it gives the size
// of each datagram of a train (the last may be shorter), or 0 when there is
// none. The other messages (ECN, packet info) stay, for every datagram.
func splitGRO(oob []byte) (seg int, rest []byte) {
	rest = oob[:0]
	for len(oob) > 0 {
		h, body, next, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return seg, rest
		}
		if h.Level == syscall.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(body) >= 4 {
			seg = int(binary.NativeEndian.Uint32(body))
		} else {
			rest = append(rest, oob[:len(oob)-len(next)]...)
		}
		oob = next
	}
	return seg, rest
}
