package main

import (
	"errors"
	"os"
	"runtime"
	"strconv"

	"github.com/burrow-tunnel/burrow/internal/config"
	"github.com/burrow-tunnel/burrow/internal/procs"
)

// cpusAuto is cpus when a file leaves it out: one CPU while the daemon
// carries a few requests (the relay) or streams (the agent), every CPU
// beyond (see procs.Scaler). On a 2-core machine one download over
// TCP+yamux moved 773–843 MB/s with 1.9 CPU-seconds per GiB (relay and
// agent) on one CPU each, against 589–621 MB/s and 2.3–2.5 s on every CPU;
// over QUIC 431–457 against 323–342 MB/s. On one CPU alone, a burst (a
// thousand requests at once) held up every other request: the neighbour of
// a thousand stalled visitors saw a p99 of up to 3.5× idle, against 2× on
// every CPU, which auto takes for the burst.
const cpusAuto = "auto"

// check reports a wrong log section or cpus.
func (p procFile) check() error {
	var errs config.Errors
	if _, _, err := parseCPUs(p.CPUs); err != nil {
		errs.Add("cpus", "%v", err)
	}
	return errors.Join(checkLog(p.Log), errs.Join())
}

// parseCPUs reads cpus: auto, or a number of CPUs (0: every CPU).
func parseCPUs(s string) (n int, auto bool, err error) {
	if s == cpusAuto {
		return 0, true, nil
	}
	n, err = strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false, errors.New(strconv.Quote(s) + " is not auto or a number of CPUs (0 for every CPU)")
	}
	return n, false, nil
}

// applyCPUs has the process run Go code as cpus says: auto starts the
// process's procs.Scaler, a number sets that many CPUs (0: every CPU the
// machine and its cgroup grant). The GOMAXPROCS environment variable, when
// set, wins. It returns what is in force, for the log.
func applyCPUs(cpus string) string {
	procs.Use(nil)
	if os.Getenv("GOMAXPROCS") != "" {
		return "GOMAXPROCS=" + os.Getenv("GOMAXPROCS")
	}
	n, auto, _ := parseCPUs(cpus) // checked at load
	runtime.SetDefaultGOMAXPROCS()
	switch {
	case auto:
		most := runtime.GOMAXPROCS(0)
		procs.Use(procs.New(most, procs.Above, procs.Hold))
		return "auto: 1, or " + strconv.Itoa(most) + " with more than " + strconv.Itoa(procs.Above) + " requests or streams at once"
	case n > 0:
		runtime.GOMAXPROCS(n)
	}
	return strconv.Itoa(runtime.GOMAXPROCS(0))
}
