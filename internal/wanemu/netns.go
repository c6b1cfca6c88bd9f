package wanemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/var/run/netns"

// tunName is the device name inside each namespace; namespaces keep it unique.
const tunName = "wan0"

// Command returns a command that runs name in the network namespace ns,
// through `ip netns exec`.
func Command(ctx context.Context, ns, name string, arg ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, arg...)...)
}

// InNamespace runs fn on an OS thread switched into the network namespace ns.
// Sockets and devices that fn creates belong to ns for their whole life, so
// fn may open a listener or dial, return it, and the caller may use it from
// any goroutine. Goroutines that fn starts do not run in ns.
func InNamespace(ns string, fn func() error) (err error) {
	target, err := unix.Open(filepath.Join(netnsDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("wanemu: open namespace %q: %w", ns, err)
	}
	defer unix.Close(target)

	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("wanemu: open own namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("wanemu: enter namespace %q: %w", ns, err)
	}
	// Deferred so that a panic in fn does not leave the thread behind.
	defer func() {
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			// The thread stays locked, so the runtime throws it away when
			// this goroutine exits instead of running other code in ns.
			err = errors.Join(err, fmt.Errorf("wanemu: leave namespace %q: %w", ns, serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// ip runs the ip tool with args and folds its stderr into the error.
func ip(ctx context.Context, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %v: %w: %s", args, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// setupSide configures an already created namespace: lo up, a TUN device with
// addr, mtu and txqlen. It returns the TUN's fd, non-blocking. Only the connected route of addr is added: the
// namespace can reach its peer and nothing else.
func setupSide(ctx context.Context, ns string, addr netip.Prefix, mtu, txqlen int) (int, error) {
	tun := -1
	err := InNamespace(ns, func() error {
		if addr.Addr().Is4() {
			// Keeps IPv6 router solicitations and MLD reports off the link.
			err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("disable ipv6: %w", err)
			}
		}
		var err error
		tun, err = openTUN(tunName)
		return err
	})
	if err != nil {
		return -1, err
	}
	addrArgs := []string{"-n", ns, "addr", "add", addr.String(), "dev", tunName}
	if addr.Addr().Is6() {
		addrArgs = append(addrArgs, "nodad")
	}
	for _, args := range [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		addrArgs,
		{"-n", ns, "link", "set", tunName, "mtu", strconv.Itoa(mtu), "txqueuelen", strconv.Itoa(txqlen), "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			unix.Close(tun)
			return -1, fmt.Errorf("wanemu: %w", err)
		}
	}
	return tun, nil
}

// openTUN creates a TUN device (no packet information header) in the calling
// thread's network namespace.
func openTUN(name string) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tun name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETIFF %q: %w", name, err)
	}
	return fd, nil
}
