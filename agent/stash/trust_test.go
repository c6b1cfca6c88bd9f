package stash

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckTrust(t *testing.T) {
	cases := []struct {
		name, config, agent string
		ok                  bool
		want                string
	}{
		{"loopback", "stash: []\n", "127.0.0.1", true,
			"the agent reaches Stash from 127.0.0.1, a local address: Stash takes its X-Forwarded-For without trusted_proxies."},
		{"LAN", "stash: []\n", "192.168.1.20", true,
			"the agent reaches Stash from 192.168.1.20, a local address: Stash takes its X-Forwarded-For without trusted_proxies."},
		{"listed", "trusted_proxies:\n  - 203.0.113.0/24\n", "203.0.113.9", true,
			"the agent reaches Stash from 203.0.113.9, which is in trusted_proxies: Stash takes its X-Forwarded-For."},
		{"listed as a string", "trusted_proxies: 198.51.100.1, 203.0.113.9\n", "203.0.113.9", true,
			"the agent reaches Stash from 203.0.113.9, which is in trusted_proxies: Stash takes its X-Forwarded-For."},
		{"not listed", "trusted_proxies: [10.0.0.0/8]\n", "203.0.113.9", false,
			"the agent reaches Stash from 203.0.113.9, which is neither a local address nor in trusted_proxies in CONFIG: " +
				"a Stash from mid-2026 on refuses what comes through Burrow. Stop Stash, add it to the list:\n\n    trusted_proxies: [\"203.0.113.9\"]\n\n" +
				"and start Stash again (or run the agent on Stash's machine or LAN)."},
		{"whitelist", "public_whitelist: [198.51.100.0/24]\n", "127.0.0.1", true,
			"the agent reaches Stash from 127.0.0.1, a local address: Stash takes its X-Forwarded-For without trusted_proxies. " +
				"Note: public_whitelist (198.51.100.0/24) lets these public addresses use Stash without a login."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeConfig(t, c.config, 0o600)
			tr, err := CheckTrust(p, netip.MustParseAddr(c.agent))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(c.want, "CONFIG", p)
			if tr.OK() != c.ok || tr.Message != want {
				t.Errorf("ok %v, message:\n%s\nwant ok %v:\n%s", tr.OK(), tr.Message, c.ok, want)
			}
		})
	}
}

func TestSourceAddr(t *testing.T) {
	a, err := SourceAddr("127.0.0.1:9999")
	if err != nil || !a.IsLoopback() {
		t.Fatalf("%v, %v", a, err)
	}
}
