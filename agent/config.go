// Package agent is Burrow's home side: it dials out to a relay, registers its
// routes, and connects each tunnel stream to the route's local service.
package agent

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/protocol"

	"github.com/burrow-tunnel/burrow/internal/config"
)

// Transport choices.
const (
	TransportAuto = "auto"
	TransportQUIC = "quic"
	TransportTCP  = "tcp"
)

// Config is the agent's validated configuration. cmd/burrow decodes agent.yaml
// into it; the tags are the file's keys.
type Config struct {
	// Relay is the relay's tunnel address, host:port. In agent.yaml, relay
	// may also be a list: Relays.
	Relay string `mapstructure:"-"`
	// Relays are more relays to keep sessions to, beside Relay.
	Relays []string `mapstructure:"-"`
	// ConnectionsPerRelay is how many sessions the agent keeps to each relay
	// address (0: one).
	ConnectionsPerRelay int `mapstructure:"connections_per_relay"`
	// RelayRefresh is how often the relays' names are resolved again, so
	// that a relay added to DNS gets sessions (0: 30 s).
	RelayRefresh time.Duration `mapstructure:"relay_refresh"`
	// ServerName is the TLS name to verify when it differs from Relay's host.
	ServerName string `mapstructure:"server_name"`
	// CAFile is a PEM bundle to verify the relay with; empty means the system roots.
	CAFile string `mapstructure:"ca_file"`
	// RelayFingerprint pins the relay's certificate: "sha256:<hex>".
	RelayFingerprint string `mapstructure:"relay_fingerprint"`
	Token            string `mapstructure:"token"`
	Transport        string `mapstructure:"transport"`
	// LossCheck is how often transport auto checks QUIC's packet loss, to
	// move to TCP with BBR on a lossy path; 0 turns the check off.
	LossCheck time.Duration `mapstructure:"loss_check"`
	// ShutdownGrace is how long a stopping agent lets the streams in flight
	// finish; `burrow agent` defaults it to 30 s.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// Admin is the admin listener (metrics, health, status page).
	Admin admin.Config `mapstructure:"admin"`
	// Name is not read from the file; empty means the host's name.
	Name string `mapstructure:"-"`
	// Routes are decoded by cmd/burrow, which also reads each route's stash section.
	Routes []Route `mapstructure:"-"`
	// NoStashCheck skips the check of Stash's config.yml when the agent
	// connects (the demo, whose site is not a Stash); not in the file.
	NoStashCheck bool `mapstructure:"-"`
}

// DefaultAdminListen is the agent's admin address unless admin.listen says otherwise.
const DefaultAdminListen = "127.0.0.1:7837"

// Route is one local service published through the relay.
type Route struct {
	Host   string `mapstructure:"host"`
	Prefix string `mapstructure:"prefix"`
	// Service is the local address: http://host:port. agent.yaml takes
	// only http://; a tcp:// service, never probed for a login, serves tests.
	Service string `mapstructure:"service"`
	// AllowUnauthenticated publishes a Stash that has no login.
	AllowUnauthenticated bool `mapstructure:"allow_unauthenticated"`
	// Access is the route's access policy, enforced by the relay; nil means open.
	Access *Access `mapstructure:"access"`
	// StashConfigFile is Stash's config.yml, for `burrow stash check`; in the
	// file it is the route's stash.config_file.
	StashConfigFile string `mapstructure:"-"`
}

// Validate checks the config; every error names its key.
func (c *Config) Validate() error {
	var errs config.Errors
	add := errs.Add
	if err := c.Admin.Validate(); err != nil {
		add("admin.listen", "%v", err)
	}
	relays := c.relayList()
	if len(relays) == 0 {
		add("relay", "is required (the relay's tunnel address, e.g. \"relay.example.com:7835\", or a list of them)")
	}
	for i, r := range relays {
		key := "relay"
		if len(relays) > 1 {
			key = fmt.Sprintf("relay[%d]", i)
		}
		if _, port, err := net.SplitHostPort(r); err != nil || port == "" {
			add(key, "%q must be host:port (e.g. \"relay.example.com:7835\")", r)
		}
	}
	if c.ConnectionsPerRelay < 0 || c.ConnectionsPerRelay > 16 {
		add("connections_per_relay", "%d must be between 1 and 16", c.ConnectionsPerRelay)
	}
	if c.RelayRefresh < 0 {
		add("relay_refresh", "%v must not be negative", c.RelayRefresh)
	}
	if c.Token == "" {
		add("token", "is required: token, token_file, or the systemd credential burrow-token (create one with `burrow token new`)")
	}
	switch c.Transport {
	case TransportAuto, TransportQUIC, TransportTCP:
	case "":
		c.Transport = TransportAuto
	default:
		add("transport", "%q is not one of auto, quic, tcp", c.Transport)
	}
	if c.LossCheck < 0 {
		add("loss_check", "%v must not be negative (0 turns the check off)", c.LossCheck)
	}
	if c.RelayFingerprint != "" {
		if _, err := parseFingerprint(c.RelayFingerprint); err != nil {
			add("relay_fingerprint", "%v", err)
		}
	}
	if len(c.Routes) == 0 {
		add("routes", "needs at least one route")
	} else if len(c.Routes) > protocol.MaxRoutes {
		add("routes", "has %d routes; an agent may publish at most %d (run a second agent for more)", len(c.Routes), protocol.MaxRoutes)
	}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if r.Host == "" {
			add(key+".host", "is required")
		} else if r.Host != strings.ToLower(r.Host) || strings.ContainsAny(r.Host, ":/ *") || strings.HasSuffix(r.Host, ".") {
			add(key+".host", "%q must be a lower-case host name without scheme, port, path or trailing dot", r.Host)
		}
		if r.Prefix != "" && (!strings.HasPrefix(r.Prefix, "/") || strings.HasSuffix(r.Prefix, "/")) {
			add(key+".prefix", "%q must start with / and not end with / (e.g. \"/stash\")", r.Prefix)
		}
		if _, err := ParseService(r.Service); err != nil {
			add(key+".service", "%v", err)
		}
		if r.Access != nil {
			r.Access.validate(key+".access", add)
		}
	}
	return errs.Join()
}

// ParseService checks a route's service URL and returns the address to dial.
func ParseService(s string) (string, error) {
	if s == "" {
		return "", errors.New("is required (e.g. \"http://127.0.0.1:9999\")")
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "tcp" {
		return "", fmt.Errorf("%q: scheme must be http:// (or tcp://)", s)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%q must be scheme://host:port with no path", s)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		if u.Scheme != "http" {
			return "", fmt.Errorf("%q needs a port", s)
		}
		port = "80"
	}
	return net.JoinHostPort(host, port), nil
}

// relayList is every relay address configured, Relay first.
func (c *Config) relayList() []string {
	var out []string
	if c.Relay != "" {
		out = append(out, c.Relay)
	}
	for _, r := range c.Relays {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// connections is how many sessions the agent keeps to each relay address.
func (c *Config) connections() int { return max(1, c.ConnectionsPerRelay) }

// DefaultRelayRefresh is how often relay names are resolved again unless relay_refresh says otherwise.
const DefaultRelayRefresh = 30 * time.Second

func (c *Config) refresh() time.Duration {
	if c.RelayRefresh <= 0 {
		return DefaultRelayRefresh
	}
	return c.RelayRefresh
}
