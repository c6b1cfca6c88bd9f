// Package wanemu emulates a WAN link between two network namespaces, for
// tests that need real latency, loss and bandwidth without netem.
//
// New creates namespaces A and B, each holding a TUN device (wan0) with one
// address of a shared prefix and lo up. The calling process keeps both TUN
// file descriptors and forwards every packet read from one to the other. Per
// direction a packet goes through, in order:
//
//  1. random loss with probability Profile.Loss;
//  2. a bottleneck of Profile.RateBitsPerSec with a tail-drop queue of
//     Profile.QueueBytes (IP bytes; no link-layer overhead is counted);
//  3. a delay line of Profile.RTT/2.
//
// Steps 1 and 2 only compute the packet's delivery time. One goroutine per
// direction reads the source TUN and writes the far one, parked in the
// runtime poller until whichever comes first: a packet, or a timerfd set for
// the head of the delay line. A packet is never delivered late by more than
// a wake-up (tens of microseconds on an idle machine); under load, packets
// due within 250 µs of one being delivered go along with it, so as not to
// wake for each. Nothing is allocated or handed between goroutines per packet.
//
// Callers put their programs on either side with InNamespace (sockets made
// in-process) or Command (a child process).
//
// The namespaces get no route but the shared prefix's: traffic from them can
// only reach the other namespace, never the host or the outside world.
package wanemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Profile shapes one direction of the link.
type Profile struct {
	// RTT is the round-trip time the profile contributes; each direction
	// delays packets by RTT/2.
	RTT time.Duration
	// Loss is the probability in [0, 1] that a packet is dropped at random.
	Loss float64
	// RateBitsPerSec is the bottleneck rate; 0 means unlimited.
	RateBitsPerSec int64
	// QueueBytes bounds the bottleneck queue; 0 means 1.5 times the
	// bandwidth-delay product, and never less than 32 full-size packets.
	QueueBytes int
}

// Validate reports a profile that cannot be applied.
func (p Profile) Validate() error {
	switch {
	case p.RTT < 0:
		return fmt.Errorf("wanemu: profile RTT %v is negative", p.RTT)
	case !(p.Loss >= 0 && p.Loss <= 1):
		return fmt.Errorf("wanemu: profile Loss %v is outside [0, 1]", p.Loss)
	case p.RateBitsPerSec < 0:
		return fmt.Errorf("wanemu: profile RateBitsPerSec %d is negative", p.RateBitsPerSec)
	case p.QueueBytes < 0:
		return fmt.Errorf("wanemu: profile QueueBytes %d is negative", p.QueueBytes)
	}
	return nil
}

// Side is one end of the link.
type Side struct {
	// Namespace is the network namespace New creates; it must not exist yet.
	Namespace string
	// Addr is the TUN's address and prefix, such as 10.233.0.1/24.
	Addr netip.Prefix
}

// Config describes a link.
type Config struct {
	A, B Side
	// Profile shapes both directions until SetProfile changes it.
	Profile Profile
	// MTU of both TUN devices; 0 means 1500.
	MTU int
	// TxQueueLen of both TUN devices; 0 means 4096.
	TxQueueLen int
	// Seed makes the loss pattern reproducible; 0 picks a random one.
	Seed uint64
	// Logger receives setup and teardown events; nil discards them.
	Logger *slog.Logger
}

var nsName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// Validate checks the config and names the offending key.
func (c *Config) Validate() error {
	for _, s := range []struct {
		key  string
		side Side
	}{{"A", c.A}, {"B", c.B}} {
		if !nsName.MatchString(s.side.Namespace) {
			return fmt.Errorf("wanemu: %s.Namespace %q is not a valid namespace name", s.key, s.side.Namespace)
		}
		a := s.side.Addr.Addr()
		if !s.side.Addr.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.Zone() != "" {
			return fmt.Errorf("wanemu: %s.Addr %v is not a usable unicast prefix", s.key, s.side.Addr)
		}
	}
	if c.A.Namespace == c.B.Namespace {
		return fmt.Errorf("wanemu: A.Namespace and B.Namespace are both %q", c.A.Namespace)
	}
	if c.A.Addr.Addr() == c.B.Addr.Addr() {
		return fmt.Errorf("wanemu: A.Addr and B.Addr are both %v", c.A.Addr.Addr())
	}
	if c.A.Addr.Masked() != c.B.Addr.Masked() {
		return fmt.Errorf("wanemu: A.Addr %v and B.Addr %v are not in one prefix", c.A.Addr, c.B.Addr)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 9000) {
		return fmt.Errorf("wanemu: MTU %d is outside [576, 9000]", c.MTU)
	}
	if c.TxQueueLen < 0 {
		return fmt.Errorf("wanemu: TxQueueLen %d is negative", c.TxQueueLen)
	}
	if err := c.Profile.Validate(); err != nil {
		return fmt.Errorf("Profile: %w", err)
	}
	return nil
}

// DirStats counts one direction's packets.
type DirStats struct {
	Packets     uint64 // delivered to the far TUN
	Bytes       uint64 // IP bytes delivered
	Lost        uint64 // dropped at random (Profile.Loss)
	QueueDrops  uint64 // tail-dropped at the full bottleneck queue
	Overflows   uint64 // dropped because the delay line was full
	WriteErrors uint64 // rejected by the far TUN
}

// Dropped is every packet that entered and was not delivered.
func (s DirStats) Dropped() uint64 {
	return s.Lost + s.QueueDrops + s.Overflows + s.WriteErrors
}

// Stats counts both directions.
type Stats struct {
	AToB, BToA DirStats
}

// Link is a running emulated link; Close removes it.
type Link struct {
	cfg    Config
	log    *slog.Logger
	ab, ba *direction

	wake    int            // eventfd: written once to stop both directions
	closers []func() error // every fd the link owns, closed after the loops stop
	group   errgroup.Group

	closeOnce sync.Once
	closeErr  error
	created   []string // namespaces New made, deleted by Close
}

// New creates the namespaces and TUN devices of cfg and starts forwarding.
// ctx bounds the setup only; the link runs until Close. On error everything
// already created is removed.
func New(ctx context.Context, cfg Config) (_ *Link, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.TxQueueLen == 0 {
		cfg.TxQueueLen = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	l := &Link{cfg: cfg, log: cfg.Logger.With("a", cfg.A.Namespace, "b", cfg.B.Namespace)}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.closeFDs(), l.deleteNamespaces())
		}
	}()
	for _, s := range []Side{cfg.A, cfg.B} {
		if err := ip(ctx, "netns", "add", s.Namespace); err != nil {
			return nil, fmt.Errorf("wanemu: %w", err)
		}
		l.created = append(l.created, s.Namespace)
	}
	tunA, err := setupSide(ctx, cfg.A.Namespace, cfg.A.Addr, cfg.MTU, cfg.TxQueueLen)
	if err != nil {
		return nil, err
	}
	l.closeFD(tunA)
	tunB, err := setupSide(ctx, cfg.B.Namespace, cfg.B.Addr, cfg.MTU, cfg.TxQueueLen)
	if err != nil {
		return nil, err
	}
	l.closeFD(tunB)
	if l.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("wanemu: eventfd: %w", err)
	}
	l.closeFD(l.wake)
	var closers []func() error
	l.ab, closers, err = newDirection("a->b", tunA, tunB, l.wake, cfg.MTU, cfg.Seed)
	l.closers = append(l.closers, closers...)
	if err != nil {
		return nil, err
	}
	l.ba, closers, err = newDirection("b->a", tunB, tunA, l.wake, cfg.MTU, cfg.Seed^0x9e3779b97f4a7c15)
	l.closers = append(l.closers, closers...)
	if err != nil {
		return nil, err
	}
	l.ab.setProfile(cfg.Profile)
	l.ba.setProfile(cfg.Profile)

	for _, d := range []*direction{l.ab, l.ba} {
		l.group.Go(func() error {
			err := d.run()
			if err != nil {
				l.stop() // a link that lost one direction is down
			}
			return err
		})
	}
	l.log.Debug("wanemu: link up", "addr_a", cfg.A.Addr, "addr_b", cfg.B.Addr, "profile", cfg.Profile)
	return l, nil
}

// SetProfile shapes both directions with p from now on. Packets already in
// the delay line keep the delivery time they were given.
func (l *Link) SetProfile(p Profile) error {
	return l.SetProfiles(p, p)
}

// SetProfiles shapes the A-to-B and B-to-A directions separately; the RTT a
// ping sees is then (aToB.RTT + bToA.RTT) / 2.
func (l *Link) SetProfiles(aToB, bToA Profile) error {
	if err := errors.Join(aToB.Validate(), bToA.Validate()); err != nil {
		return err
	}
	l.ab.setProfile(aToB)
	l.ba.setProfile(bToA)
	return nil
}

// Stats returns the packet counters of both directions.
func (l *Link) Stats() Stats {
	return Stats{AToB: l.ab.stats(), BToA: l.ba.stats()}
}

// Close stops forwarding, waits for the forwarder, and deletes both
// namespaces. It returns the first forwarding error, if any.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		l.stop()
		err := l.group.Wait()
		l.closeErr = errors.Join(err, l.closeFDs(), l.deleteNamespaces())
		l.log.Debug("wanemu: link closed", "err", l.closeErr)
	})
	return l.closeErr
}

// stop tells both forwarding loops to return; the eventfd stays readable, so
// one write reaches both.
func (l *Link) stop() {
	unix.Write(l.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
}

// closeFD registers fd to be closed with the link.
func (l *Link) closeFD(fd int) {
	l.closers = append(l.closers, func() error { return unix.Close(fd) })
}

// closeFDs closes the TUNs (which removes the devices), the eventfd, the
// timers and the epoll instances.
func (l *Link) closeFDs() error {
	var errs []error
	for _, c := range l.closers {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("wanemu: close: %w", err))
		}
	}
	l.closers = nil
	return errors.Join(errs...)
}

// deleteNamespaces removes the namespaces this link created. It does not take
// a context: cleanup must run even after the caller's context is done.
func (l *Link) deleteNamespaces() error {
	var errs []error
	for _, ns := range l.created {
		if err := ip(context.Background(), "netns", "delete", ns); err != nil {
			errs = append(errs, fmt.Errorf("wanemu: %w", err))
		}
	}
	l.created = nil
	return errors.Join(errs...)
}
