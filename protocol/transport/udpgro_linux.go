package transport

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groReadSize holds the largest datagram UDP GRO delivers (64 KiB), and
// groBatch is how many such reads one recvmmsg asks for, as quic-go does.
const (
	groReadSize = 1 << 16
	groBatch    = 8
)

// groConn is a UDP socket with UDP_GRO on: the kernel hands over a train of
// same-sized datagrams from one sender as one, with their size in a control
// message, and ReadBatch splits it into the datagrams quic-go expects. A
// QUIC peer that sends with GSO (as quic-go does on Linux) arrives in one
// read per burst instead of one per 1,452-byte packet, and on loopback the
// kernel no longer cuts the burst up at all. Datagrams that were not
// coalesced still come up to groBatch at a time, as without GRO.
//
// Everything else, including the GSO writes, is the plain *net.UDPConn.
// quic-go uses ReadBatch because groConn implements its batchConn interface.
type groConn struct {
	*net.UDPConn
	pc *ipv4.PacketConn // recvmmsg

	msgs []ipv4.Message // the last recvmmsg: n reads
	n    int
	i    int // the read being split, and in it:
	off  int // where its next datagram starts
	seg  int // the datagrams' size; 0 when the read was one plain datagram
	oob  []byte
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
	g := &groConn{UDPConn: c, pc: ipv4.NewPacketConn(c), msgs: make([]ipv4.Message, groBatch)}
	for i := range g.msgs {
		g.msgs[i].Buffers = [][]byte{make([]byte, groReadSize)}
		g.msgs[i].OOB = make([]byte, 256)
	}
	return g
}

// ReadBatch fills ms with the pending datagrams, reading more when none is
// pending. It blocks until at least one is there, and honours the socket's
// read deadline.
func (c *groConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	out := 0
	for out == 0 && len(ms) > 0 {
		if c.i >= c.n {
			n, err := c.pc.ReadBatch(c.msgs, 0)
			if err != nil {
				return 0, err
			}
			c.n, c.i = n, 0
			c.start()
		}
		for out < len(ms) && c.i < c.n {
			r := &c.msgs[c.i]
			data := r.Buffers[0][:r.N]
			if c.off >= len(data) {
				c.i++
				c.start()
				continue
			}
			end := len(data)
			if c.seg > 0 && c.off+c.seg < end {
				end = c.off + c.seg
			}
			m := &ms[out]
			if len(m.Buffers) == 0 {
				return out, errors.New("protocol: ReadBatch needs a buffer per message")
			}
			m.N = copy(m.Buffers[0], data[c.off:end])
			m.NN = copy(m.OOB, c.oob)
			m.Flags = 0
			if m.N < end-c.off {
				m.Flags = unix.MSG_TRUNC
			}
			m.Addr = r.Addr // one sender for the whole train
			c.off = end
			out++
		}
	}
	return out, nil
}

// start begins splitting read c.i.
func (c *groConn) start() {
	c.off, c.seg, c.oob = 0, 0, nil
	if c.i < c.n {
		r := &c.msgs[c.i]
		c.seg, c.oob = splitGRO(r.OOB[:r.NN])
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
