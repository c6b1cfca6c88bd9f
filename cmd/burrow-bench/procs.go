package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go runs on.
const clockTicks = 100

// child is a process the bench started: nginx, a relay, an agent, wrk.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // Wait's result, set before done closes
}

// startChild starts argv with stdout and stderr in logPath. The child is
// killed if the bench dies, so no relay or nginx outlives a crashed run.
// Through `ip netns exec` the PID stays the same: ip execs the command.
func startChild(name, logPath string, argv ...string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process is gone.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, and SIGKILL after 5 s.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// logTail is the end of the child's log, for error messages.
func (c *child) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

// procStat is the part of /proc/PID/stat the bench reads.
type procStat struct {
	ppid       int
	cpuSeconds float64 // utime + stime
	reaped     float64 // cutime + cstime: children waited for
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name may hold spaces and parentheses; fields start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return procStat{}, errors.New("short /proc stat")
	}
	ppid, _ := strconv.Atoi(f[1])
	var t [4]uint64 // utime stime cutime cstime
	for i := range t {
		t[i], _ = strconv.ParseUint(f[11+i], 10, 64)
	}
	return procStat{ppid: ppid, cpuSeconds: float64(t[0]+t[1]) / clockTicks, reaped: float64(t[2]+t[3]) / clockTicks}, nil
}

// withDescendants returns pids and every process below them (nginx workers).
func withDescendants(pids []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	var out []int
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	for _, p := range pids {
		walk(p)
	}
	return out
}

// cpuSeconds is the user+system CPU time of pids and their descendants.
func cpuSeconds(pids []int) float64 {
	var sum float64
	for _, p := range withDescendants(pids) {
		if st, err := readStat(p); err == nil {
			sum += st.cpuSeconds
		}
	}
	return sum
}

// machineLoad tells how busy the machine was with work other than the bench.
type machineLoad struct {
	at   time.Time
	busy float64 // CPU seconds the whole machine spent busy
	own  float64 // CPU seconds of the bench, its children living and reaped
}

func readLoad() machineLoad {
	l := machineLoad{at: time.Now()}
	// cpu user nice system idle iowait irq softirq steal …
	if f := strings.Fields(firstLine(readFile("/proc/stat"))); len(f) > 8 {
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, _ := strconv.ParseFloat(f[i], 64)
			l.busy += v / clockTicks
		}
	}
	self := os.Getpid()
	if st, err := readStat(self); err == nil {
		l.own = st.reaped
	}
	l.own += cpuSeconds([]int{self})
	return l
}

// othersShare is the share of the machine's CPUs that other processes used
// between two readings, 0-1.
func othersShare(a, b machineLoad, cpus int) float64 {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 || cpus == 0 {
		return 0
	}
	return max(0, (b.busy-a.busy)-(b.own-a.own)) / (wall * float64(cpus))
}

// rssBytes is the resident set of pids and their descendants (VmRSS).
func rssBytes(pids []int) int64 {
	var sum int64
	for _, p := range withDescendants(pids) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					n, _ := strconv.ParseInt(f[0], 10, 64)
					sum += n * kib
				}
			}
		}
	}
	return sum
}

// contextSwitches is how often the threads of pids and their descendants
// gave up a CPU, voluntarily (to wait) or not: each is a sleep and a
// wake-up, which on a virtual machine can cost more than the work between.
// Threads that ended meanwhile are not counted.
func contextSwitches(pids []int) uint64 {
	var sum uint64
	for _, p := range withDescendants(pids) {
		dir := "/proc/" + strconv.Itoa(p) + "/task"
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, t := range tasks {
			if b, err := os.ReadFile(dir + "/" + t.Name() + "/status"); err == nil {
				sum += parseSwitches(string(b))
			}
		}
	}
	return sum
}

// parseSwitches adds up the voluntary and involuntary context switches of
// a /proc/PID/task/TID/status text.
func parseSwitches(status string) uint64 {
	var sum uint64
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			sum += n
		}
	}
	return sum
}

// freePort finds a port free on 127.0.0.1 for both TCP and UDP (the relay's
// tunnel uses one number for QUIC and TLS).
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port, nil
	}
	return 0, errors.New("no free port")
}

// mkdir creates dir/name and returns its path.
func mkdir(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.MkdirAll(p, 0o755)
}
