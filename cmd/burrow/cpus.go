package main

import (
	"errors"
	"os"
	"runtime"

	"github.com/burrow-tunnel/burrow/internal/config"
)

// defaultCPUs is cpus when a file leaves it out: every CPU, as for any Go
// program. A proxied byte passes a chain of goroutines (socket, TLS, tunnel
// stream, socket), each waking the next; on one CPU the runtime runs the
// next on the same thread, on more it often wakes another thread for it.
// On a 2-core machine, one download over TCP+yamux through relay and agent
// on one CPU each moved 773–793 MB/s with 1.9–2.0 CPU-seconds per GiB,
// against 589–621 MB/s and 2.3–2.5 s on every CPU (QUIC: 431–457 against
// 323–342 MB/s). But on one CPU the runtime looks for sockets that became
// ready only when it has nothing else to run, or every 10 ms: a burst of
// work (a thousand requests at once, a tunnel pouring in the first windows
// of a hundred streams) holds up every other request until it ends. With
// the relay on one CPU, the neighbour of a thousand stalled visitors saw a
// p99 of up to 3.5× idle (over the 3× Burrow promises) where every CPU keeps
// it under 2×; with the agent on one, a page took 11–13 ms instead of 4 ms
// while four local downloads kept its CPU busy. So one CPU is the operator's
// choice, for a daemon whose work is a few fast transfers.
const defaultCPUs = 0

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
