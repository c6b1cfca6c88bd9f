package relay_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/burrow-tunnel/burrow/relay"
)

func TestTrustedProxiesWarning(t *testing.T) {
	cfg := relay.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	want := []string{
		"trusted_proxies[1]: 0.0.0.0/0 trusts most of the internet: any visitor can then set X-Forwarded-For and pass for another address (for Stash, a LAN one); list only the addresses of the load balancer in front of the relay",
		"trusted_proxies[2]: ::/0 trusts most of the internet: any visitor can then set X-Forwarded-For and pass for another address (for Stash, a LAN one); list only the addresses of the load balancer in front of the relay",
	}
	if got := cfg.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%q\nwant:\n%q", got, want)
	}
}
