package stash

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Keys of a Stash since mid-2026 (stash #7085): without a login it answers
// 403 to public addresses (public_whitelist may open some), and it takes
// X-Forwarded-For only from local addresses or from trusted_proxies.
const (
	trustedProxiesKey  = "trusted_proxies"
	publicWhitelistKey = "public_whitelist"
)

// Trust is whether Stash takes the forwarded headers of the agent.
type Trust struct {
	Agent           netip.Addr // the address the agent reaches Stash from
	Local           bool       // loopback or a private address: trusted without a list
	Listed          bool       // in trusted_proxies
	TrustedProxies  []string
	PublicWhitelist []string
	Message         string
}

// OK reports whether Stash takes the agent's X-Forwarded-For.
func (t Trust) OK() bool { return t.Local || t.Listed }

// CheckTrust reads trusted_proxies and public_whitelist from Stash's
// config.yml at path and says whether Stash takes X-Forwarded-For from the
// agent, which reaches Stash from the address agent.
func CheckTrust(path string, agent netip.Addr) (Trust, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Trust{}, fmt.Errorf("read stash config: %w", err)
	}
	top, err := parseTop(data)
	if err != nil {
		return Trust{}, fmt.Errorf("stash config %s: %w", path, err)
	}
	agent = agent.Unmap()
	t := Trust{Agent: agent, Local: agent.IsLoopback() || agent.IsPrivate() || agent.IsLinkLocalUnicast()}
	_, tp := lookup(top, trustedProxiesKey)
	t.TrustedProxies = stringList(tp)
	_, pw := lookup(top, publicWhitelistKey)
	t.PublicWhitelist = stringList(pw)
	for _, s := range t.TrustedProxies {
		if inRange(s, agent) {
			t.Listed = true
		}
	}
	switch {
	case t.Local:
		t.Message = fmt.Sprintf("the agent reaches Stash from %s, a local address: Stash takes its X-Forwarded-For without trusted_proxies.", agent)
	case t.Listed:
		t.Message = fmt.Sprintf("the agent reaches Stash from %s, which is in trusted_proxies: Stash takes its X-Forwarded-For.", agent)
	default:
		t.Message = fmt.Sprintf("the agent reaches Stash from %s, which is neither a local address nor in trusted_proxies in %s: "+
			"a Stash from mid-2026 on refuses what comes through Burrow. Stop Stash, add it to the list:\n\n    %s: [%q]\n\n"+
			"and start Stash again (or run the agent on Stash's machine or LAN).", agent, path, trustedProxiesKey, agent.String())
	}
	if len(t.PublicWhitelist) > 0 {
		t.Message += fmt.Sprintf(" Note: public_whitelist (%s) lets these public addresses use Stash without a login.", strings.Join(t.PublicWhitelist, ", "))
	}
	return t, nil
}

// stringList reads a YAML list of strings, or one comma-separated string.
func stringList(n *yaml.Node) []string {
	if n == nil || isEmpty(n) {
		return nil
	}
	var out []string
	switch n.Kind {
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind == yaml.ScalarNode && c.Value != "" {
				out = append(out, strings.TrimSpace(c.Value))
			}
		}
	case yaml.ScalarNode:
		for _, s := range strings.Split(n.Value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// inRange reports whether a, an address, is the address or in the CIDR s.
func inRange(s string, a netip.Addr) bool {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Contains(a)
	}
	b, err := netip.ParseAddr(s)
	return err == nil && b.Unmap() == a
}

// SourceAddr is the address this machine reaches hostport from (no packet is sent).
func SourceAddr(hostport string) (netip.Addr, error) {
	c, err := net.Dial("udp", hostport)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the agent's address toward %s: %w", hostport, err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the agent's address toward %s: %w", hostport, err)
	}
	return ap.Addr().Unmap(), nil
}
