package main

import (
	"runtime"
	"testing"
)

func TestCPUsKey(t *testing.T) {
	rc, rp, err := loadRelayConfig(writeFile(t, "relay.yaml", "state_dir: /tmp/x\ncpus: 0\n"))
	if err != nil || rp.CPUs != 0 || rc.StateDir != "/tmp/x" {
		t.Fatalf("cpus: 0 loads as %d (%v)", rp.CPUs, err)
	}
	t.Setenv("BURROW_CPUS", "3")
	_, ap, err := loadAgentConfig(writeFile(t, "agent.yaml", "relay: r:1\ntoken: test-token-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n"))
	if err != nil || ap.CPUs != 3 {
		t.Fatalf("BURROW_CPUS=3 loads as %d (%v)", ap.CPUs, err)
	}
}

func TestApplyCPUs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	t.Setenv("GOMAXPROCS", "")
	if got := applyCPUs(1); got != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("applyCPUs(1) = %d, GOMAXPROCS %d", got, runtime.GOMAXPROCS(0))
	}
	if got := applyCPUs(3); got != 3 {
		t.Errorf("applyCPUs(3) = %d", got)
	}
	runtime.GOMAXPROCS(5)
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(1)
	if got := applyCPUs(0); got != def {
		t.Errorf("applyCPUs(0) = %d, want the runtime's default %d", got, def)
	}
	// The environment variable wins over the file.
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	if got := applyCPUs(1); got != 2 {
		t.Errorf("with GOMAXPROCS=2 set, applyCPUs(1) = %d, want 2", got)
	}
}
