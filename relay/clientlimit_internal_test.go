package relay

import (
	"net/http"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func TestClientLimitCountsPerHousehold(t *testing.T) {
	synctest.Test(t, testClientLimit)
}

func testClientLimit(t *testing.T) {
	ctx := t.Context()
	c := newClientLimit(2)
	a1, a2 := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	other := netip.MustParseAddr("2001:db8:1:3::1")
	r1, ok1 := c.acquire(ctx, a1)
	_, ok2 := c.acquire(ctx, a2)
	if !ok1 || !ok2 {
		t.Fatal("the first two requests of a /64 were refused")
	}
	start := time.Now()
	if _, ok := c.acquire(ctx, a1); ok {
		t.Error("a third request from the same /64 was let through")
	}
	if waited := time.Since(start); waited != clientQueueWait {
		t.Errorf("a request over the limit waited %v, want %v", waited, clientQueueWait)
	}
	// A request that waits gets the slot that comes free.
	got := make(chan bool)
	go func() {
		_, ok := c.acquire(ctx, a2)
		got <- ok
	}()
	time.Sleep(time.Second)
	r1()
	if !<-got {
		t.Error("a waiting request did not get the slot given back")
	}
	if _, ok := c.acquire(ctx, other); !ok {
		t.Error("another /64 was refused")
	}
	r1() // a second release gives nothing back twice
	if n := c.inFlight(a2); n != 2 {
		t.Errorf("in flight after a release and a new slot: %d, want 2", n)
	}
	v4 := netip.MustParseAddr("192.0.2.7")
	r, _ := c.acquire(ctx, v4)
	if _, ok := c.acquire(ctx, netip.MustParseAddr("::ffff:192.0.2.7")); !ok {
		t.Error("the IPv4-mapped form of an address was refused at its second slot")
	}
	if _, ok := c.acquire(ctx, netip.MustParseAddr("192.0.2.8")); !ok {
		t.Error("a neighbouring IPv4 address shares a slot count")
	}
	r()
	unlimited := newClientLimit(0)
	for range 1000 {
		if _, ok := unlimited.acquire(ctx, v4); !ok {
			t.Fatal("0 must mean no limit")
		}
	}
}

func TestClientAddr(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.RemoteAddr = "[::ffff:10.0.0.5]:4000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.4")
	if got := clientAddr(r, false); got != "10.0.0.5" {
		t.Errorf("untrusted peer: %q", got)
	}
	if got := clientAddr(r, true); got != "198.51.100.4" {
		t.Errorf("behind a trusted proxy: %q, want the entry the proxy added", got)
	}
	r.Header.Set("X-Real-IP", "198.51.100.9")
	if got := clientAddr(r, true); got != "198.51.100.9" {
		t.Errorf("X-Real-IP from a trusted proxy: %q", got)
	}
}

// The stream limit counts a visitor behind a trusted proxy under the address
// the proxy added, not one the visitor may have sent itself.
func TestLimitAddr(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.RemoteAddr = "10.0.0.5:4000"
	r.Header.Set("X-Real-IP", "203.0.113.99") // possibly the client's own word
	r.Header.Add("X-Forwarded-For", "6.6.6.6, 198.51.100.4")
	if got := limitAddr(r, true); got != netip.MustParseAddr("198.51.100.4") {
		t.Errorf("behind a trusted proxy: %v, want the address the proxy added", got)
	}
	if got := limitAddr(r, false); got != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("untrusted: %v, want the peer", got)
	}
	r.Header.Set("X-Forwarded-For", "not an address")
	if got := limitAddr(r, true); got != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("an entry that does not parse: %v, want the proxy's own address", got)
	}
}
