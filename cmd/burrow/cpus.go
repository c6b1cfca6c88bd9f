package main

import (
	"errors"
	"os"
	"runtime"

	"github.com/burrow-tunnel/burrow/internal/config"
)

// agentDefaultCPUs is the agent's cpus when its file leaves it out. The
// agent is a pipeline: a byte from the service passes a chain of goroutines
// (socket, tunnel stream, TLS, socket), each waking the next. On one CPU the
// runtime runs the next one on the same thread; on more it wakes another
// thread for it, and the threads sleep and wake tens of thousands of times a
// second. One CPU moves more than a gigabit uplink carries.
const agentDefaultCPUs = 1

// relayDefaultCPUs is the relay's: every CPU. The relay answers the public,
// and on one CPU a burst of work (a thousand requests at once, a tunnel
// pouring in the first windows of a hundred streams) holds up everyone
// else's requests: the runtime looks for sockets that became ready only
// when it has nothing left to run, or every 10 ms. A relay whose machine
// does nothing else but carry one fast download uses less CPU per byte
// with cpus: 1.
const relayDefaultCPUs = 0

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
