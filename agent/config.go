// Package agent is Burrow's home side: it dials out to a relay, registers its
// routes, and connects each tunnel stream to the route's local service.
package agent

import (
	"errors"
	"fmt"
	"github.com/burrow-tunnel/burrow/internal/admin"
	"net"
	"net/url"
	"strings"
	"time"

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
	// Relay is the relay's tunnel address, host:port.
	Relay string `mapstructure:"relay"`
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
}

// DefaultAdminListen is the agent's admin address unless admin.listen says otherwise.
const DefaultAdminListen = "127.0.0.1:7837"

// Route is one local service published through the relay.
type Route struct {
	Host   string `mapstructure:"host"`
	Prefix string `mapstructure:"prefix"`
	// Service is the local address: http://host:port (or tcp://host:port).
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
	if c.Relay == "" {
		add("relay", "is required (the relay's tunnel address, e.g. \"relay.example.com:7835\")")
	} else if _, port, err := net.SplitHostPort(c.Relay); err != nil || port == "" {
		add("relay", "%q must be host:port (e.g. \"relay.example.com:7835\")", c.Relay)
	}
	if c.Token == "" {
		add("token", "is required (create one with `burrow token new`)")
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
