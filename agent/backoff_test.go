package agent

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestBackoffGrowsJittersAndCaps(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		b := newBackoff()
		b.rand = func() float64 { return r }
		want := 500 * time.Millisecond
		for i := 0; i < 20; i++ {
			d := b.next()
			if d < want/2 || d >= want {
				t.Fatalf("rand=%v attempt %d: %v not in [%v, %v)", r, i, d, want/2, want)
			}
			want = min(want*2, 30*time.Second)
		}
		b.reset()
		if d := b.next(); d >= 500*time.Millisecond {
			t.Errorf("after reset: %v", d)
		}
	}
}

// After a relay did not answer at all, the delay stays under unreachableCap.
func TestBackoffWithin(t *testing.T) {
	b := newBackoff()
	b.rand = func() float64 { return 0.999 }
	for i := range 20 {
		if d := b.nextWithin(unreachableCap); d >= unreachableCap {
			t.Fatalf("attempt %d: %v, want under %v", i, d, unreachableCap)
		}
	}
	if d := b.next(); d < 15*time.Second {
		t.Errorf("next after 20 attempts: %v, want the 30 s cap's range", d)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := wait(context.Background(), 7*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 7*time.Second {
			t.Errorf("waited %v", got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if err := wait(ctx, time.Hour); err == nil {
			t.Error("wait ignored the cancelled context")
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("cancelled wait took %v", got)
		}
	})
}

func TestConfigErrorsNameKeys(t *testing.T) {
	c := Config{
		Relay:     "relay.example.com",
		Transport: "udp",
		Routes: []Route{
			{Host: "Stash.Example.com", Service: "http://127.0.0.1:9999"},
			{Host: "stash.example.com", Prefix: "stash/", Service: "ftp://x"},
		},
		RelayFingerprint: "md5:abc",
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"relay:", "token:", "transport:", "relay_fingerprint:", "routes[0].host:", "routes[1].prefix:", "routes[1].service:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
}

func TestParseService(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:9999": "127.0.0.1:9999",
		"http://localhost":      "localhost:80",
		"tcp://[::1]:22":        "[::1]:22",
	} {
		got, err := ParseService(in)
		if err != nil || got != want {
			t.Errorf("ParseService(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:9999", "https://x:1", "http://x:1/stash", "tcp://x"} {
		if _, err := ParseService(bad); err == nil {
			t.Errorf("ParseService(%q) accepted", bad)
		}
	}
}
