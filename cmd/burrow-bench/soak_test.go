package main

import (
	"strings"
	"testing"
	"time"
)

// soakOf is a soak of n seconds whose sample at second i is f(i).
func soakOf(n int, f func(i int) soakSample) *soakResult {
	r := &soakResult{key: "tcp", duration: time.Duration(n) * time.Second, window: time.Minute}
	for i := range n {
		s := f(i)
		s.at = time.Duration(i) * time.Second
		r.samples = append(r.samples, s)
	}
	return r
}

func TestSoakGrowth(t *testing.T) {
	steady := soakOf(240, func(i int) soakSample {
		return soakSample{relayRSS: 60*mib + int64(i%7)*mib, fds: 40 + i%3, goroutines: 100 + i%5}
	})
	if g := steady.growth(); len(g) != 0 {
		t.Errorf("steady load: growth %v, want none", g)
	}
	if peak, _ := steady.peak(); peak != 66*mib {
		t.Errorf("peak %d MiB, want 66", peak/mib)
	}
	leaking := soakOf(240, func(i int) soakSample {
		return soakSample{relayRSS: 60*mib + int64(i)*mib/4, fds: 40 + i/10, goroutines: 100}
	})
	g := strings.Join(leaking.growth(), ", ")
	if !strings.Contains(g, "RSS") || !strings.Contains(g, "fds") || strings.Contains(g, "goroutines") {
		t.Errorf("leaking RSS and fds: growth %q", g)
	}
	unread := soakOf(240, func(int) soakSample { return soakSample{relayRSS: mib, goroutines: -1} })
	if g := strings.Join(unread.growth(), ", "); !strings.Contains(g, "not read") {
		t.Errorf("goroutines never read: growth %q", g)
	}
}

func TestSoakTargets(t *testing.T) {
	r := &report{soak: []*soakResult{
		soakOf(60, func(int) soakSample { return soakSample{relayRSS: 60 * mib, goroutines: 50} }),
		soakOf(60, func(int) soakSample { return soakSample{relayRSS: 80 * mib, goroutines: 50} }),
	}}
	r.soak[0].key = "quic"
	var got []string
	r.soakTargets(func(name string, v float64, ok func(float64) bool, _ string) {
		if !ok(v) {
			got = append(got, name)
		}
	})
	if len(got) != 0 {
		t.Errorf("missed %v; TCP at 80 MiB, 1.33× QUIC, steady, should pass", got)
	}
}
