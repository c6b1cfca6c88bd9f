package main

import (
	"os"
	"testing"
	"time"
)

func TestSample(t *testing.T) {
	s := sample{3, 1, 2}
	if s.median() != 2 || s.min() != 1 || s.max() != 3 {
		t.Errorf("median/min/max of %v = %v/%v/%v", s, s.median(), s.min(), s.max())
	}
	if m := (sample{4, 1, 3, 2}).median(); m != 2.5 {
		t.Errorf("even median = %v, want 2.5", m)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 300; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p := percentile(ds, 50); p != 150 {
		t.Errorf("p50 = %v, want 150", p)
	}
	if p := percentile(ds, 99); p != 297 {
		t.Errorf("p99 = %v, want 297", p)
	}
}

func TestSizeName(t *testing.T) {
	for n, want := range map[int64]string{gib: "1 GiB", 256 * mib: "256 MiB", kib: "1 KiB", 1000: "1000 B"} {
		if got := sizeName(n); got != want {
			t.Errorf("sizeName(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseSwitches(t *testing.T) {
	status := "Name:\tburrow\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\nVmRSS:\t 1000 kB\n"
	if got := parseSwitches(status); got != 1234 {
		t.Errorf("parseSwitches = %d, want 1234", got)
	}
	if got := parseSwitches("Name:\tx\n"); got != 0 {
		t.Errorf("parseSwitches without the fields = %d, want 0", got)
	}
}

func TestContextSwitchesOfThisProcess(t *testing.T) {
	self := []int{os.Getpid()}
	before := contextSwitches(self)
	for range 20 {
		time.Sleep(time.Millisecond) // each sleep gives up the CPU
	}
	if after := contextSwitches(self); after < before+20 {
		t.Errorf("context switches went from %d to %d over 20 sleeps, want at least 20 more", before, after)
	}
}
