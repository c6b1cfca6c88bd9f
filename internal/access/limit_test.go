package access

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoginLimiterBlocks: N failures in the window block the client for a
// period that doubles with each block; failures spread wider than the
// window do not add up; a success forgets the client; an IPv6 /64 is one
// client, another address is unaffected.
func TestLoginLimiterBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoginLimiter(3, 10*time.Minute, 15*time.Minute)
		a := netip.MustParseAddr("203.0.113.1")
		other := netip.MustParseAddr("203.0.113.2")
		fail := func(addr netip.Addr) bool { _, _, started := l.fail(addr); return started }

		// Spread over more than the window: no block.
		fail(a)
		time.Sleep(6 * time.Minute)
		fail(a)
		time.Sleep(6 * time.Minute)
		if fail(a) {
			t.Fatal("blocked on failures spread over more than the window")
		}
		if fail(a) != true {
			t.Fatal("third failure within the window did not block")
		}
		if _, b := l.blocked(a); !b {
			t.Fatal("not blocked")
		}
		if _, b := l.blocked(other); b {
			t.Fatal("another address is blocked")
		}
		time.Sleep(15*time.Minute - time.Second)
		if _, b := l.blocked(a); !b {
			t.Fatal("block ended early")
		}
		time.Sleep(time.Second)
		if _, b := l.blocked(a); b {
			t.Fatal("block outlived its 15 minutes")
		}
		// The next block lasts twice as long.
		fail(a)
		fail(a)
		until, count, started := l.fail(a)
		if !started || count != 3 || time.Until(until) != 30*time.Minute {
			t.Fatalf("second block: started %v, count %d, lasts %v; want 30m", started, count, time.Until(until))
		}
		// A success forgets it all.
		l.succeed(a)
		if _, b := l.blocked(a); b {
			t.Fatal("still blocked after a success")
		}
		fail(a)
		fail(a)
		if until, _, _ := l.fail(a); time.Until(until) != 15*time.Minute {
			t.Fatalf("block after a success lasts %v, want the first period again", time.Until(until))
		}

		// IPv6: the /64 is one client.
		v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::ffff")
		fail(v6a)
		fail(v6b)
		fail(v6a)
		if _, b := l.blocked(v6b); !b {
			t.Fatal("failures from one /64 did not add up")
		}
		if _, b := l.blocked(netip.MustParseAddr("2001:db8:1:3::1")); b {
			t.Fatal("another /64 is blocked")
		}
	})
}

func TestLoginLimiterCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLoginLimiter(1, time.Minute, time.Hour)
		a := netip.MustParseAddr("198.51.100.9")
		var until time.Time
		for range 10 {
			until, _, _ = l.fail(a)
			time.Sleep(time.Until(until))
		}
		if d := time.Until(until); d != 0 {
			t.Fatalf("slept to the end of the block, %v left", d)
		}
		until, _, _ = l.fail(a)
		if d := time.Until(until); d != maxBlock {
			t.Fatalf("a long-blocked client is blocked for %v, want the cap %v", d, maxBlock)
		}
	})
}

func TestAddressRulesMapped(t *testing.T) {
	g, err := Compile(&protocolPolicy{Allow: []string{"203.0.113.0/24", "::ffff:198.51.100.0/120"}, Deny: []string{"203.0.113.66"}}, "h", "", &Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"203.0.113.1": true, "::ffff:203.0.113.1": true, "203.0.113.66": false, "198.51.100.3": true,
		"192.0.2.1": false, "2001:db8::1": false,
	} {
		if got := g.addressAllowed(netip.MustParseAddr(addr).Unmap()); got != want {
			t.Errorf("%s: allowed %v, want %v", addr, got, want)
		}
	}
}
