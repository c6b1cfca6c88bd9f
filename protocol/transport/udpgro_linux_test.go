package transport

import (
	"bytes"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestGROSplitsTrain sends one GSO train of 1,452-byte datagrams and a short
// tail, as quic-go does, and reads it back through groConn in batches
// smaller than the train: every datagram arrives whole, in order, with the
// sender's address and without the UDP_GRO control message.
func TestGROSplitsTrain(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	pc := withGRO(rx)
	gc, ok := pc.(*groConn)
	if !ok {
		t.Skip("kernel without UDP_GRO") // Linux < 5.0
	}
	if err := setRecvTOS(rx); err != nil {
		t.Fatal(err)
	}
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	const seg, count, tail = 1452, 20, 300
	train := make([]byte, seg*count+tail)
	for i := range train {
		train[i] = byte(i / seg)
	}
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	oob[unix.CmsgLen(0)], oob[unix.CmsgLen(0)+1] = byte(seg&0xff), byte(seg>>8) // native (little) endian uint16
	if _, _, err := tx.WriteMsgUDP(train, oob, nil); err != nil {
		t.Skipf("kernel without UDP GSO: %v", err)
	}
	if _, err := tx.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}

	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
		ms[i].OOB = make([]byte, 128)
	}
	var got [][]byte
	reads := 0
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < count+2 {
		n, err := gc.ReadBatch(ms, 0)
		if err != nil {
			t.Fatalf("ReadBatch after %d datagrams: %v", len(got), err)
		}
		if reads == 0 && gc.msgs[0].N != len(train) {
			t.Errorf("first read: %d bytes, want the whole train of %d: GRO did not coalesce it", gc.msgs[0].N, len(train))
		}
		reads++
		for _, m := range ms[:n] {
			got = append(got, append([]byte(nil), m.Buffers[0][:m.N]...))
			if m.Addr.String() != tx.LocalAddr().String() {
				t.Errorf("from %v, want %v", m.Addr, tx.LocalAddr())
			}
			if s, _ := splitGRO(m.OOB[:m.NN]); s != 0 {
				t.Errorf("the UDP_GRO control message reached quic-go (segment %d)", s)
			}
			if m.NN == 0 {
				t.Errorf("the ECN control message was lost")
			}
		}
	}
	for i := 0; i < count; i++ {
		if want := bytes.Repeat([]byte{byte(i)}, seg); !bytes.Equal(got[i], want) {
			t.Fatalf("datagram %d: %d bytes, first %x; want %d bytes of %x", i, len(got[i]), got[i][:1], seg, byte(i))
		}
	}
	if len(got[count]) != tail {
		t.Errorf("tail: %d bytes, want %d", len(got[count]), tail)
	}
	if string(got[count+1]) != "after" {
		t.Errorf("next datagram %q, want %q", got[count+1], "after")
	}
	// 22 datagrams, 8 at a time: the train's 21 and "after" came in one recvmmsg.
	if reads != 3 {
		t.Errorf("%d ReadBatch calls, want 3", reads)
	}
}

func setRecvTOS(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1) }); err != nil {
		return err
	}
	return serr
}
