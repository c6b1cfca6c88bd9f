package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// installHint is how to get the external tools.
const installHint = "apt-get install nginx wrk"

// nofile is the open-file limit the bench and its children get: 5,000
// websockets cost the bench process two descriptors each, the relay and the
// agent one each.
const nofile = 1 << 17

// tools says which external tools are usable; each missing one has a note.
type tools struct {
	nginx, wrk, netns bool
	notes             []string
}

func checkTools() tools {
	var t tools
	if _, err := exec.LookPath("nginx"); err == nil {
		t.nginx = true
	} else {
		t.notes = append(t.notes, "nginx not found: the origin is Go's net/http file server and the nginx proxy path is skipped (install: "+installHint+")")
	}
	if _, err := exec.LookPath("wrk"); err == nil {
		t.wrk = true
	} else {
		t.notes = append(t.notes, "wrk not found: scenario 3 is skipped (install: "+installHint+")")
	}
	t.netns = true
	if os.Geteuid() != 0 {
		t.netns = false
		t.notes = append(t.notes, "not root: scenario 7 (network namespaces) is skipped")
	} else if _, err := exec.LookPath("ip"); err != nil {
		t.netns = false
		t.notes = append(t.notes, "ip (iproute2) not found: scenario 7 is skipped (install: apt-get install iproute2)")
	} else if f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0); err != nil {
		t.netns = false
		t.notes = append(t.notes, fmt.Sprintf("/dev/net/tun unusable (%v): scenario 7 is skipped", err))
	} else {
		f.Close()
	}
	return t
}

// raiseNofile lifts RLIMIT_NOFILE for this process and, through
// syscall.Setrlimit, for every child it starts. It returns the limit in
// force, and an error when that is below nofile.
func raiseNofile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	want := max(lim.Max, nofile)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err != nil {
		// Without CAP_SYS_RESOURCE the hard limit is the ceiling; the
		// error still says why the limit is lower than asked.
		if err2 := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max}); err2 != nil {
			return lim.Cur, err
		}
		return lim.Max, err
	}
	return want, nil
}

// machine describes where the figures come from.
type machine struct {
	cpus                  int
	cpuModel              string
	memory                string
	kernel                string
	goVersion             string
	burrowVersion         string
	nginxVersion          string
	wrkVersion            string
	nofile                uint64
	nofileErr             string // why the limit could not be raised
	loadBefore, loadAfter string
	othersShare           float64 // CPU share other processes used during the run
	sysctls               []string
}

func describeMachine(ctx context.Context, bin string) machine {
	m := machine{
		cpus:      runtime.NumCPU(),
		goVersion: runtime.Version(),
		kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		cpuModel:  procField("/proc/cpuinfo", "model name"),
		memory:    procField("/proc/meminfo", "MemTotal"),
	}
	m.burrowVersion = firstLine(output(ctx, bin, "version"))
	m.nginxVersion = firstLine(output(ctx, "nginx", "-v"))
	m.wrkVersion = firstLine(output(ctx, "wrk", "-v"))
	m.loadBefore = loadAvg()
	for _, k := range []string{
		"net/ipv4/tcp_congestion_control", "net/core/rmem_max", "net/core/wmem_max",
		"net/ipv4/tcp_rmem", "net/ipv4/tcp_wmem",
	} {
		m.sysctls = append(m.sysctls, strings.ReplaceAll(k, "/", ".")+" = "+strings.TrimSpace(readFile("/proc/sys/"+k)))
	}
	return m
}

// output runs a short command and returns its combined output ("" on failure).
func output(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	return string(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	sc := bufio.NewScanner(bytes.NewReader([]byte(readFile(path))))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}

func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
