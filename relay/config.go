package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/burrow-tunnel/burrow/internal/admin"
	"github.com/burrow-tunnel/burrow/internal/config"
)

// Config is the relay's validated configuration. cmd/burrow decodes relay.yaml
// into it; the tags are the file's keys.
type Config struct {
	Tunnel         TunnelConfig   `mapstructure:"tunnel"`
	Public         PublicConfig   `mapstructure:"public"`
	TLS            TLSConfig      `mapstructure:"tls"`
	StateDir       string         `mapstructure:"state_dir"`
	TrustedProxies []netip.Prefix `mapstructure:"trusted_proxies"`
	Agents         []AgentGrant   `mapstructure:"agents"`
	Limits         LimitsConfig   `mapstructure:"limits"`
	Admin          admin.Config   `mapstructure:"admin"`
	// ShutdownGrace is how long a stopping relay lets requests in flight
	// finish; `burrow relay` defaults it to 30 s.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// AccessLog logs one line per public request; in relay.yaml it is log.access.
	AccessLog bool `mapstructure:"-"`
	// AnyHost, when set, serves a request for a host no route serves by
	// the routes of AnyHost, its Host header unchanged: the demo, reached
	// by whatever name or address. Not in relay.yaml.
	AnyHost string `mapstructure:"-"`
}

// DefaultAdminListen is the relay's admin address unless admin.listen says otherwise.
const DefaultAdminListen = "127.0.0.1:7836"

// LimitsConfig bounds what a public visitor, or a peer on the tunnel port,
// can make the relay hold. Zero turns a limit off; `burrow relay` starts
// from DefaultLimits.
type LimitsConfig struct {
	// StalledClient cuts a visitor that reads nothing of an answer, or sends
	// nothing of an upload, for this long, and resets its tunnel stream so
	// the agent stops sending. Upgraded connections (WebSockets) are exempt:
	// Stash's subscriptions are silent for minutes.
	StalledClient time.Duration `mapstructure:"stalled_client"`
	// ResponseHeader is how long a service may take to send its response
	// headers before the visitor gets a 504 page.
	ResponseHeader time.Duration `mapstructure:"response_header"`
	// StreamsPerClient caps the requests and upgraded connections in flight
	// from one client address; more get a 429 page.
	StreamsPerClient int `mapstructure:"streams_per_client"`
	// SessionMemoryMiB caps what one agent session's streams may hold unread
	// on the relay together: QUIC's connection window; over TCP+yamux, what
	// the stream windows may grow to beyond their first 256 KiB each.
	SessionMemoryMiB int `mapstructure:"session_memory_mib"`
	// MemoryMiB is the relay's memory budget: while it holds more, new
	// public requests get a 503 page (the ones in flight go on). The
	// process also asks Go's garbage collector to stay under it.
	MemoryMiB int `mapstructure:"memory_mib"`
	// HandshakesPerMinute caps the tunnel handshakes one source address may
	// start per minute (bursts of up to a tenth of it pass at once).
	HandshakesPerMinute int `mapstructure:"handshakes_per_minute"`
}

// DefaultLimits suit a relay on a 1 GB VPS serving a household.
func DefaultLimits() LimitsConfig {
	return LimitsConfig{
		StalledClient:       60 * time.Second,
		ResponseHeader:      10 * time.Minute,
		StreamsPerClient:    128,
		SessionMemoryMiB:    192,
		MemoryMiB:           512,
		HandshakesPerMinute: 60,
	}
}

// TunnelConfig is where agents connect.
type TunnelConfig struct {
	// Listen is the address for QUIC (UDP) and TLS+yamux (TCP), same port number.
	Listen   string `mapstructure:"listen"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
	// Hostname, when set, makes the tunnel use the public (ACME) certificate of
	// this name, so that agents verify the relay with the system roots.
	Hostname string `mapstructure:"hostname"`
}

// PublicConfig is the public side.
type PublicConfig struct {
	// HTTP is the plain-HTTP listener address; empty disables it.
	HTTP string `mapstructure:"http"`
	// HTTPS is the TLS listener address (HTTP/1.1 and HTTP/2 on TCP, HTTP/3
	// on UDP, same port); empty disables it.
	HTTPS string `mapstructure:"https"`
	// RedirectHTTP makes plain HTTP answer 308 to https (ACME HTTP-01
	// excepted); it applies only when HTTPS is set.
	RedirectHTTP bool `mapstructure:"redirect_http"`
	// HSTS adds Strict-Transport-Security to HTTPS responses.
	HSTS bool `mapstructure:"hsts"`
}

// TLSConfig is the public certificate: a static pair, or ACME.
type TLSConfig struct {
	CertFile string     `mapstructure:"cert_file"`
	KeyFile  string     `mapstructure:"key_file"`
	ACME     ACMEConfig `mapstructure:"acme"`
	// Storage is where ACME certificates, keys and the account are kept:
	// state_dir/certmagic unless storage.redis is set.
	Storage StorageConfig `mapstructure:"storage"`
}

// StorageConfig chooses where ACME's state lives.
type StorageConfig struct {
	// Redis, when its address is set, shares certificates, the ACME account,
	// challenge tokens and locks with the other relays that use the same
	// Redis and key prefix.
	Redis RedisStorageConfig `mapstructure:"redis"`
}

// RedisStorageConfig is a Redis server that relays share.
type RedisStorageConfig struct {
	// Address is host:port; empty keeps the certificates in state_dir.
	Address string `mapstructure:"address"`
	// PasswordFile holds Redis's password (its requirepass), if it has one.
	PasswordFile string `mapstructure:"password_file"`
	// KeyPrefix starts every key Burrow writes; relays that share
	// certificates use the same one.
	KeyPrefix string `mapstructure:"key_prefix"`
}

// DefaultRedisKeyPrefix is tls.storage.redis.key_prefix unless relay.yaml says otherwise.
const DefaultRedisKeyPrefix = "burrow"

// Enabled reports whether the certificates live in Redis.
func (r RedisStorageConfig) Enabled() bool { return r.Address != "" }

// ACMEConfig is an RFC 8555 certificate authority.
type ACMEConfig struct {
	Email string `mapstructure:"email"`
	// CA is the directory URL.
	CA string `mapstructure:"ca"`
	// CARoot is a PEM file with the CA's root, for a private CA.
	CARoot string `mapstructure:"ca_root"`
}

// AgentGrant is one agent allowed to connect, and the hosts it may serve.
type AgentGrant struct {
	Name        string            `mapstructure:"name"`
	TokenSHA256 [sha256.Size]byte `mapstructure:"token_sha256"`
	// Hosts are lower-case names; a leading "*." matches exactly one label.
	Hosts []string `mapstructure:"hosts"`
}

// ParseTokenHash decodes the hex sha256 of a token, as printed by `burrow token new`.
func ParseTokenHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return h, errors.New("must be 64 hex digits (the token_sha256 printed by `burrow token new`)")
	}
	copy(h[:], b)
	return h, nil
}

// Validate checks the config; every error names its key.
func (c *Config) Validate() error {
	var errs config.Errors
	add := errs.Add
	if c.Tunnel.Listen == "" {
		add("tunnel.listen", "is required (e.g. \":7835\")")
	} else if _, _, err := net.SplitHostPort(c.Tunnel.Listen); err != nil {
		add("tunnel.listen", "%q is not host:port: %v", c.Tunnel.Listen, err)
	}
	if (c.Tunnel.CertFile == "") != (c.Tunnel.KeyFile == "") {
		add("tunnel.cert_file", "tunnel.cert_file and tunnel.key_file must be set together")
	}
	if c.Public.HTTP != "" {
		if _, _, err := net.SplitHostPort(c.Public.HTTP); err != nil {
			add("public.http", "%q is not host:port: %v", c.Public.HTTP, err)
		}
	}
	if c.Public.HTTPS != "" {
		if _, _, err := net.SplitHostPort(c.Public.HTTPS); err != nil {
			add("public.https", "%q is not host:port: %v", c.Public.HTTPS, err)
		}
		if c.TLS.CertFile == "" && c.TLS.ACME.CA == "" {
			add("tls", "public.https needs a certificate: set tls.cert_file/tls.key_file or tls.acme.ca")
		}
	}
	if c.Public.HTTP == "" && c.Public.HTTPS == "" {
		add("public", "set public.http, public.https or both")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls.cert_file", "tls.cert_file and tls.key_file must be set together")
	}
	if c.TLS.ACME.CA != "" {
		if u, err := url.Parse(c.TLS.ACME.CA); err != nil || u.Scheme != "https" || u.Host == "" {
			add("tls.acme.ca", "%q must be an https:// ACME directory URL", c.TLS.ACME.CA)
		}
	}
	c.validateStorage(add)
	if c.Tunnel.Hostname != "" {
		if err := ValidHost(c.Tunnel.Hostname); err != nil {
			add("tunnel.hostname", "%v", err)
		}
		if c.TLS.ACME.CA == "" && c.TLS.CertFile == "" {
			add("tunnel.hostname", "needs a public certificate: set tls.acme or tls.cert_file")
		}
	}
	if err := c.Admin.Validate(); err != nil {
		add("admin.listen", "%v", err)
	}
	if c.StateDir == "" {
		add("state_dir", "is required (e.g. /var/lib/burrow)")
	}
	names := map[string]bool{}
	owner := map[string]string{}
	tokens := map[[sha256.Size]byte]int{}
	for i, a := range c.Agents {
		key := fmt.Sprintf("agents[%d]", i)
		if a.Name == "" {
			add(key+".name", "is required")
		} else if names[a.Name] {
			add(key+".name", "%q is used by another agent", a.Name)
		}
		names[a.Name] = true
		if a.TokenSHA256 == ([sha256.Size]byte{}) {
			add(key+".token_sha256", "is required")
		} else if j, dup := tokens[a.TokenSHA256]; dup {
			add(key+".token_sha256", "is the same as agents[%d]'s (%q): the relay could not tell the two agents apart; give each agent its own token (`burrow token new`)", j, c.Agents[j].Name)
		} else {
			tokens[a.TokenSHA256] = i
		}
		if len(a.Hosts) == 0 {
			add(key+".hosts", "needs at least one host")
		}
		for j, h := range a.Hosts {
			hk := fmt.Sprintf("%s.hosts[%d]", key, j)
			if err := ValidHostPattern(h); err != nil {
				add(hk, "%v", err)
				continue
			}
			if o, ok := owner[h]; ok && o != a.Name {
				add(hk, "%q is already granted to agent %q", h, o)
			}
			owner[h] = a.Name
		}
	}
	for key, v := range map[string]int64{
		"limits.stalled_client": int64(c.Limits.StalledClient), "limits.response_header": int64(c.Limits.ResponseHeader),
		"limits.streams_per_client": int64(c.Limits.StreamsPerClient),
		"limits.session_memory_mib": int64(c.Limits.SessionMemoryMiB), "limits.handshakes_per_minute": int64(c.Limits.HandshakesPerMinute),
		"limits.memory_mib": int64(c.Limits.MemoryMiB),
	} {
		if v < 0 {
			add(key, "must not be negative (0 turns the limit off)")
		}
	}
	return errs.Join()
}

// validateStorage checks tls.storage.
func (c *Config) validateStorage(add func(key, format string, args ...any)) {
	r := c.TLS.Storage.Redis
	if !r.Enabled() {
		if r.PasswordFile != "" {
			add("tls.storage.redis.address", "is required with tls.storage.redis.password_file (e.g. \"127.0.0.1:6379\")")
		}
		return
	}
	if host, port, err := net.SplitHostPort(r.Address); err != nil || host == "" || port == "" {
		add("tls.storage.redis.address", "%q is not host:port (e.g. \"127.0.0.1:6379\")", r.Address)
	}
	if c.TLS.ACME.CA == "" {
		add("tls.storage.redis", "holds ACME certificates: set tls.acme.ca, or remove tls.storage")
	}
	if r.KeyPrefix == "" {
		add("tls.storage.redis.key_prefix", "must not be empty (e.g. \"burrow\"); relays that share certificates use the same prefix")
	} else if strings.ContainsFunc(r.KeyPrefix, func(c rune) bool { return c <= ' ' || c > '~' || c == '*' }) {
		add("tls.storage.redis.key_prefix", "%q: use printable ASCII without spaces or '*' (e.g. \"burrow\")", r.KeyPrefix)
	}
}

// Warnings are settings that work but are likely mistakes; the relay logs them at start.
func (c *Config) Warnings() []string {
	var w []string
	for i, p := range c.TrustedProxies {
		if p.Bits() < 8 || (p.Addr().Is6() && !p.Addr().Is4In6() && p.Bits() < 16) {
			w = append(w, fmt.Sprintf("trusted_proxies[%d]: %s trusts most of the internet: any visitor can then set X-Forwarded-For and pass for another address "+
				"(for Stash, a LAN one); list only the addresses of the load balancer in front of the relay", i, p))
		}
	}
	return w
}

// ValidHostPattern checks a granted host: a lower-case DNS name, optionally with a leading "*.".
func ValidHostPattern(h string) error {
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Errorf("%q: a wildcard may only be a leading \"*.\"", h)
	}
	return ValidHost(name)
}

// ValidHost checks a concrete host name (no port, lower case).
func ValidHost(h string) error {
	if h == "" {
		return errors.New("host is empty")
	}
	if h != strings.ToLower(h) {
		return fmt.Errorf("%q: host must be lower case", h)
	}
	if strings.ContainsAny(h, ":/ ") {
		return fmt.Errorf("%q: host must be a bare name, without scheme, port or path", h)
	}
	if len(h) > 253 {
		return fmt.Errorf("%q: host is longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q: bad DNS label %q", h, label)
		}
	}
	return nil
}

// Allows reports whether the grant covers host.
func (a *AgentGrant) Allows(host string) bool {
	for _, p := range a.Hosts {
		if hostMatches(p, host) {
			return true
		}
	}
	return false
}

func hostMatches(pattern, host string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		label, parent, found := strings.Cut(host, ".")
		return found && label != "" && parent == rest
	}
	return pattern == host
}
