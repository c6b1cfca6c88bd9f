package main

import (
	"errors"
	"os"
	"runtime"

	"github.com/burrow-tunnel/burrow/internal/config"
)

// defaultCPUs is cpus when a file leaves it out. A proxied byte passes a
// chain of goroutines (socket, TLS, tunnel stream, socket), each waking the
// next. On one CPU the runtime runs the next one on the same thread; on more,
// it wakes another thread for it, and the threads sleep and wake a hundred
// thousand times a second. On two CPUs one download over TCP+yamux moved
// 806 MB/s with 2.0 CPU-seconds per GiB (relay and agent) on one CPU each,
// against 584 MB/s and 2.5 s on both; over QUIC, 455 against 326 MB/s
// (`make bench`, scenario 1). One CPU moves more than a gigabit link carries,
// HTTPS included; a relay serving many visitors at once on a large machine
// may set more.
const defaultCPUs = 1

// check reports a wrong log section or cpus.
func (p procFile) check() error {
	var errs config.Errors
	if p.CPUs < 0 {
		errs.Add("cpus", "%d is negative: set how many CPUs to run on at once, or 0 for every CPU", p.CPUs)
	}
	return errors.Join(checkLog(p.Log), errs.Join())
}

// applyCPUs has the process run Go code on n CPUs at once (0: every CPU the
// machine and its cgroup grant), unless the GOMAXPROCS environment variable
// is set, which wins. It returns the number in force.
func applyCPUs(n int) int {
	switch {
	case os.Getenv("GOMAXPROCS") != "":
	case n == 0:
		runtime.SetDefaultGOMAXPROCS()
	default:
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}
