package main

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/procs"
)

func TestCPUsKey(t *testing.T) {
	rc, rp, err := loadRelayConfig(writeFile(t, "relay.yaml", "state_dir: /tmp/x\ncpus: 0\n"))
	if err != nil || rp.CPUs != "0" || rc.StateDir != "/tmp/x" {
		t.Fatalf("cpus: 0 loads as %q (%v)", rp.CPUs, err)
	}
	t.Setenv("BURROW_CPUS", "3")
	_, ap, err := loadAgentConfig(writeFile(t, "agent.yaml", "relay: r:1\ntoken: test-token-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n"))
	if err != nil || ap.CPUs != "3" {
		t.Fatalf("BURROW_CPUS=3 loads as %q (%v)", ap.CPUs, err)
	}
}

func TestApplyCPUs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before); procs.Use(nil) })
	t.Setenv("GOMAXPROCS", "")
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	if got := applyCPUs("1"); got != "1" || runtime.GOMAXPROCS(0) != 1 || procs.Current() != nil {
		t.Errorf("applyCPUs(1) = %q, GOMAXPROCS %d, scaler %v", got, runtime.GOMAXPROCS(0), procs.Current())
	}
	if got := applyCPUs("3"); got != "3" {
		t.Errorf("applyCPUs(3) = %q", got)
	}
	if got := applyCPUs("0"); got != strconv.Itoa(def) {
		t.Errorf("applyCPUs(0) = %q, want the runtime's default %d", got, def)
	}
	got := applyCPUs("auto")
	if procs.Current() == nil || runtime.GOMAXPROCS(0) != 1 || !strings.HasPrefix(got, "auto") {
		t.Errorf("applyCPUs(auto) = %q, GOMAXPROCS %d, scaler %v; want one CPU and a scaler", got, runtime.GOMAXPROCS(0), procs.Current())
	}
	if applyCPUs("0"); procs.Current() != nil || runtime.GOMAXPROCS(0) != def {
		t.Errorf("after auto, applyCPUs(0): GOMAXPROCS %d, scaler %v", runtime.GOMAXPROCS(0), procs.Current())
	}

	// The environment variable wins over the file.
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	if got := applyCPUs("auto"); got != "GOMAXPROCS=2" || runtime.GOMAXPROCS(0) != 2 || procs.Current() != nil {
		t.Errorf("with GOMAXPROCS=2 set, applyCPUs(auto) = %q, GOMAXPROCS %d", got, runtime.GOMAXPROCS(0))
	}
}
