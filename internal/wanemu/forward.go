package wanemu

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// lineCap bounds the packets one direction holds in its delay line: 200
// Mbit/s with a 100 ms one-way delay is about 1,700 full-size packets, plus
// the bottleneck queue.
const lineCap = 8192

// readBatch caps the packets read in one go, so a flood on the source does
// not hold back deliveries that are due.
const readBatch = 64

// batchWindow is how early a packet may leave when it follows one that is
// due: once awake, the loop takes along what falls due within the window
// instead of sleeping a few microseconds for each packet. A packet that is
// first in line, such as a lone ping, is never early.
const batchWindow = 250 * time.Microsecond

// packet is a buffer travelling the delay line; buffers are recycled so the
// steady state allocates nothing.
type packet struct {
	buf []byte
	n   int
	due time.Duration // since the direction's epoch
}

// shape is a Profile resolved for the per-packet path.
type shape struct {
	delay     time.Duration
	loss      float64
	rate      int64
	nsPerByte float64
	queue     float64 // bytes
}

// direction forwards src to dst in a single goroutine. A private epoll
// instance holds src, a timerfd armed for the head of the delay line, and the
// link's stop eventfd; that epoll fd sits in the runtime's poller, so the
// goroutine parks like any network reader until a packet arrives or one is
// due. Timerfds fire with nanosecond precision, where Go timers sleep in
// epoll_wait with millisecond resolution; and there is no goroutine hand-off
// per packet.
type direction struct {
	name     string
	src, dst int // TUN fds, non-blocking; owned by Link
	wake     int // eventfd that stops the loop once written; owned by Link
	timer    int // timerfd; owned by Link
	ep       *os.File
	rc       syscall.RawConn
	epoch    time.Time
	shape    atomic.Pointer[shape]

	// Owned by the loop goroutine.
	line      ring
	free      []*packet
	mtu       int
	rng       *rand.Rand
	busyUntil time.Duration // when the bottleneck has sent all it holds
	lastDue   time.Duration // keeps delivery in FIFO order across profile changes
	armed     time.Duration // due time the timer is set for
	events    [3]unix.EpollEvent
	nev       int
	pollErr   error
	pollFn    func(fd uintptr) bool // built once so polling does not allocate

	packets, bytes, lost, queueDrops, overflows, writeErrors atomic.Uint64
}

// newDirection builds a direction; the caller closes timer and ep (through
// the returned closers) even when it fails halfway.
func newDirection(name string, src, dst, wake, mtu int, seed uint64) (d *direction, closers []func() error, err error) {
	d = &direction{
		name:  name,
		src:   src,
		dst:   dst,
		wake:  wake,
		timer: -1,
		epoch: time.Now(),
		line:  ring{buf: make([]*packet, lineCap)},
		mtu:   mtu,
		armed: -1,
		rng:   rand.New(rand.NewPCG(seed, seed>>1^0x5851f42d4c957f2d)),
	}
	d.pollFn = func(fd uintptr) bool {
		d.nev, d.pollErr = epollPoll(int(fd), d.events[:])
		return d.nev > 0 || d.pollErr != nil
	}
	if d.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("wanemu: %s: timerfd_create: %w", name, err)
	}
	closers = append(closers, func() error { return unix.Close(d.timer) })
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, closers, fmt.Errorf("wanemu: %s: epoll_create: %w", name, err)
	}
	// A non-blocking fd is what makes os.NewFile put it in the poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, closers, fmt.Errorf("wanemu: %s: epoll: %w", name, err)
	}
	d.ep = os.NewFile(uintptr(epfd), "epoll:"+name)
	closers = append(closers, d.ep.Close)
	if d.rc, err = d.ep.SyscallConn(); err != nil {
		return nil, closers, fmt.Errorf("wanemu: %s: epoll: %w", name, err)
	}
	for _, r := range []struct {
		fd     int
		events uint32
	}{
		{src, unix.EPOLLIN},
		{wake, unix.EPOLLIN},
		// Edge-triggered: each expiry reports once, with no read to clear it.
		{d.timer, unix.EPOLLIN | unix.EPOLLET},
	} {
		ev := unix.EpollEvent{Events: r.events, Fd: int32(r.fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, r.fd, &ev); err != nil {
			return nil, closers, fmt.Errorf("wanemu: %s: epoll_ctl: %w", name, err)
		}
	}
	return d, closers, nil
}

func (d *direction) setProfile(p Profile) {
	s := &shape{delay: p.RTT / 2, loss: p.Loss, rate: p.RateBitsPerSec}
	if s.rate > 0 {
		s.nsPerByte = 8e9 / float64(s.rate)
		s.queue = float64(p.QueueBytes)
		if s.queue == 0 {
			bdp := float64(s.rate) / 8 * p.RTT.Seconds()
			s.queue = max(1.5*bdp, float64(32*d.mtu))
		}
	}
	d.shape.Store(s)
}

func (d *direction) now() time.Duration { return time.Since(d.epoch) }

func (d *direction) stats() DirStats {
	return DirStats{
		Packets:     d.packets.Load(),
		Bytes:       d.bytes.Load(),
		Lost:        d.lost.Load(),
		QueueDrops:  d.queueDrops.Load(),
		Overflows:   d.overflows.Load(),
		WriteErrors: d.writeErrors.Load(),
	}
}

// run forwards until wake is written. Packets still in the delay line are
// dropped, as a cut cable would.
func (d *direction) run() error {
	for {
		if err := d.arm(d.deliver()); err != nil {
			return err
		}
		if err := d.rc.Read(d.pollFn); err != nil {
			return fmt.Errorf("wanemu: %s: poll: %w", d.name, err)
		}
		if d.pollErr != nil {
			return fmt.Errorf("wanemu: %s: epoll_wait: %w", d.name, d.pollErr)
		}
		for _, ev := range d.events[:d.nev] {
			switch int(ev.Fd) {
			case d.wake:
				return nil
			case d.src:
				if err := d.read(); err != nil {
					return err
				}
			}
		}
	}
}

// arm sets the timer for the head packet's due time, if it is not set yet.
// A timer left from an earlier head only causes a spurious wake-up.
func (d *direction) arm(due time.Duration) error {
	if due < 0 || due == d.armed {
		return nil
	}
	wait := max(due-d.now(), 1) // zero would disarm
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(wait))}
	if err := unix.TimerfdSettime(d.timer, 0, &spec, nil); err != nil {
		return fmt.Errorf("wanemu: %s: timerfd_settime: %w", d.name, err)
	}
	d.armed = due
	return nil
}

// read takes up to readBatch packets from src into the delay line.
func (d *direction) read() error {
	for range readBatch {
		p := d.get()
		n, err := rawRead(d.src, p.buf)
		if err != nil {
			d.free = append(d.free, p)
			if err == unix.EAGAIN {
				return nil
			}
			return fmt.Errorf("wanemu: %s: read: %w", d.name, err)
		}
		if n == 0 {
			d.free = append(d.free, p)
			continue
		}
		if due, ok := d.admit(n); ok {
			if d.line.full() {
				d.overflows.Add(1)
			} else {
				p.n, p.due = n, due
				d.line.push(p)
				continue
			}
		}
		d.free = append(d.free, p)
	}
	return nil
}

func (d *direction) get() *packet {
	if n := len(d.free); n > 0 {
		p := d.free[n-1]
		d.free = d.free[:n-1]
		return p
	}
	return &packet{buf: make([]byte, d.mtu)}
}

// admit applies loss and the bottleneck to an n-byte packet arriving now and
// returns when it is due at the far end, or false if it is dropped.
func (d *direction) admit(n int) (time.Duration, bool) {
	s := d.shape.Load()
	if s.loss > 0 && d.rng.Float64() < s.loss {
		d.lost.Add(1)
		return 0, false
	}
	now := d.now()
	depart := now
	if s.rate > 0 {
		d.busyUntil = max(d.busyUntil, now)
		// An idle link always takes a packet, even one above the queue limit.
		if backlog := float64(d.busyUntil-now) / s.nsPerByte; backlog > 0 && backlog+float64(n) > s.queue {
			d.queueDrops.Add(1)
			return 0, false
		}
		d.busyUntil += time.Duration(float64(n) * s.nsPerByte)
		depart = d.busyUntil
	}
	due := max(depart+s.delay, d.lastDue)
	d.lastDue = due
	return due, true
}

// deliver writes every packet that is due and returns the due time of the
// next one, or -1 if the line is empty.
func (d *direction) deliver() time.Duration {
	limit, batching := d.now(), false
	for {
		p := d.line.peek()
		if p == nil {
			return -1
		}
		if p.due > limit {
			return p.due
		}
		if !batching {
			limit += batchWindow
			batching = true
		}
		d.line.pop()
		if err := rawWrite(d.dst, p.buf[:p.n]); err != nil {
			// The kernel refuses malformed packets, and all of them while
			// the far device is down; a real link would lose them too.
			d.writeErrors.Add(1)
		} else {
			d.packets.Add(1)
			d.bytes.Add(uint64(p.n))
		}
		d.free = append(d.free, p)
	}
}

// ring is a fixed-capacity FIFO of packets.
type ring struct {
	buf        []*packet
	head, size int
}

func (r *ring) full() bool { return r.size == len(r.buf) }

func (r *ring) push(p *packet) {
	r.buf[(r.head+r.size)%len(r.buf)] = p
	r.size++
}

func (r *ring) peek() *packet {
	if r.size == 0 {
		return nil
	}
	return r.buf[r.head]
}

func (r *ring) pop() {
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
}

// The calls below never block: the fds are non-blocking and epoll_wait gets a
// zero timeout. Raw system calls keep the runtime from handing the P to
// another thread when one runs long (a TUN write carries the receiving
// socket's whole TCP processing), which at 20k packets/s costs more than the
// forwarding itself. They retry EINTR.

func rawRead(fd int, b []byte) (int, error) {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != unix.EINTR {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
	}
}

func rawWrite(fd int, b []byte) error {
	for {
		_, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		if errno != unix.EINTR {
			if errno != 0 {
				return errno
			}
			return nil
		}
	}
}

func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno != unix.EINTR {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
	}
}
