package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
	"github.com/burrow-tunnel/burrow/relay"
)

// The example configs in deploy/ must always load.
func TestDeployExamplesLoad(t *testing.T) {
	if _, _, err := loadRelayConfig("../../deploy/relay.yaml"); err != nil {
		t.Errorf("deploy/relay.yaml: %v", err)
	}
	if cfg, _, err := loadAgentConfig("../../deploy/agent.yaml"); err != nil {
		t.Errorf("deploy/agent.yaml: %v", err)
	} else if cfg.LossCheck != agent.DefaultLossCheck {
		t.Errorf("deploy/agent.yaml: loss_check = %v, want %v", cfg.LossCheck, agent.DefaultLossCheck)
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrorsNameFileAndKey(t *testing.T) {
	cases := []struct {
		name, body string
		relay      bool
		want       []string
	}{
		{"unknown key", "relay: r:1\ntoken: test-token-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n    servce: x\n", false, []string{"routes[0].servce: unknown key"}},
		{"unknown top key", "relay: r:1\ntoken: test-token-0123456789\ntransprt: tcp\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"transprt: unknown key"}},
		{"bad transport", "relay: r:1\ntoken: test-token-0123456789\ntransport: udp\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"transport:", "udp"}},
		{"bad loss_check", "relay: r:1\ntoken: test-token-0123456789\nloss_check: often\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"loss_check:", "often"}},
		{"negative loss_check", "relay: r:1\ntoken: test-token-0123456789\nloss_check: -1s\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"loss_check:", "negative"}},
		{"missing token", "relay: r:1\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"token: is required"}},
		{"bad service", "relay: r:1\ntoken: test-token-0123456789\nroutes:\n  - host: a.b\n    service: 127.0.0.1:9999\n", false, []string{"routes[0].service:"}},
		{"bad log level", "relay: r:1\ntoken: test-token-0123456789\nlog:\n  level: loud\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"log.level:"}},
		{"bad hash", "state_dir: /tmp/x\nagents:\n  - name: nas\n    token_sha256: abc\n    hosts: [a.b]\n", true, []string{"agents[0].token_sha256:"}},
		{"bad host", "state_dir: /tmp/x\nagents:\n  - name: nas\n    token_sha256: " + strings.Repeat("a", 64) + "\n    hosts: [A.b]\n", true, []string{"agents[0].hosts[0]:"}},
		{"bad cidr", "state_dir: /tmp/x\ntrusted_proxies: [nope]\n", true, []string{"trusted_proxies[0]:"}},
		{"unknown relay key", "state_dir: /tmp/x\npublic:\n  htp: ':80'\n", true, []string{"public.htp: unknown key"}},
		{"unknown nested keys", "state_dir: /tmp/x\npublic:\n  htps: ':443'\nlog:\n  colour: true\nagents:\n  - name: nas\n    hots: [a.b]\n", true, []string{"public.htps: unknown key", "log.colour: unknown key", "agents[0].hots: unknown key"}},
		{"unknown keys at two depths", "relay: r:1\ntoken: test-token-0123456789\ntransprt: tcp\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n    servce: x\n    stash:\n      confg_file: x\n", false, []string{"transprt: unknown key", "routes[0].servce: unknown key", "routes[0].stash.confg_file: unknown key"}},
		{"wrong type", "state_dir: /tmp/x\npublic:\n  hsts: maybe\n", true, []string{"public.hsts:"}},
		{"map expected", "state_dir: /tmp/x\ntunnel: ':7835'\n", true, []string{"tunnel:"}},
		{"empty hash", "state_dir: /tmp/x\nagents:\n  - name: nas\n    token_sha256: ''\n    hosts: [a.b]\n", true, []string{"agents[0].token_sha256: is required"}},
		{"not yaml", "relay: [\n", false, []string{"yaml"}},
		{"negative cpus", "state_dir: /tmp/x\ncpus: -2\n", true, []string{"cpus:", `"-2" is not auto or a number of CPUs`}},
		{"cpus not a number", "relay: r:1\ntoken: test-token-0123456789\ncpus: all\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n", false, []string{"cpus:", `"all" is not auto`}},
		{"negative memory budget", "state_dir: /tmp/x\nlimits:\n  memory_mib: -1\n", true, []string{"limits.memory_mib:", "negative"}},
		{"redis address", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      address: localhost\n", true, []string{"tls.storage.redis.address:", "host:port"}},
		{"redis without acme", "state_dir: /tmp/x\ntls:\n  storage:\n    redis:\n      address: 127.0.0.1:6379\n", true, []string{"tls.storage.redis:", "tls.acme.ca"}},
		{"redis password without address", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      password_file: /etc/burrow/redis.pass\n", true, []string{"tls.storage.redis.address: is required"}},
		{"redis empty prefix", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      address: 127.0.0.1:6379\n      key_prefix: ''\n", true, []string{"tls.storage.redis.key_prefix:", "empty"}},
		{"redis bad prefix", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      address: 127.0.0.1:6379\n      key_prefix: 'my certs'\n", true, []string{"tls.storage.redis.key_prefix:", "spaces"}},
		{"redis unknown key", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      adress: 127.0.0.1:6379\n", true, []string{"tls.storage.redis.adress: unknown key"}},
		{"unknown storage", "state_dir: /tmp/x\ntls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    etcd:\n      address: 127.0.0.1:2379\n", true, []string{"tls.storage.etcd: unknown key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, "conf.yaml", c.body)
			var err error
			if c.relay {
				_, _, err = loadRelayConfig(p)
			} else {
				_, _, err = loadAgentConfig(p)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, p) {
				t.Errorf("error does not name the file %s: %v", p, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not say %q: %v", w, msg)
				}
			}
		})
	}
	if _, _, err := loadAgentConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaultsAndDecodedValues(t *testing.T) {
	p := writeFile(t, "relay.yaml", "trusted_proxies: [10.0.0.1, 192.168.0.0/16]\n")
	rc, rl, err := loadRelayConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Tunnel.Listen != ":7835" || rc.Public.HTTP != ":80" || rc.Public.HTTPS != "" || !rc.Public.RedirectHTTP ||
		rc.StateDir != "/var/lib/burrow" || rl != (procFile{Log: logFile{Level: "info", Format: "text"}, CPUs: "auto"}) {
		t.Errorf("relay defaults: %+v %+v", rc, rl)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("192.168.0.0/16")}
	if !slices.Equal(rc.TrustedProxies, want) {
		t.Errorf("trusted_proxies = %v, want %v", rc.TrustedProxies, want)
	}

	if r := rc.TLS.Storage.Redis; r.Enabled() || r.KeyPrefix != "burrow" {
		t.Errorf("tls.storage.redis defaults: %+v, want no address and key_prefix burrow", r)
	}
	p = writeFile(t, "relay.yaml", "tls:\n  acme:\n    ca: https://ca.example/dir\n  storage:\n    redis:\n      address: 10.0.0.5:6379\n      password_file: /etc/burrow/redis.pass\n")
	if rc, _, err = loadRelayConfig(p); err != nil {
		t.Fatal(err)
	}
	if r := rc.TLS.Storage.Redis; r != (relay.RedisStorageConfig{Address: "10.0.0.5:6379", PasswordFile: "/etc/burrow/redis.pass", KeyPrefix: "burrow"}) {
		t.Errorf("tls.storage.redis = %+v", r)
	}

	p = writeFile(t, "agent.yaml", "relay: r:1\ntoken: test-token-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n    stash:\n      config_file: /srv/stash/config.yml\n")
	ac, al, err := loadAgentConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Transport != "auto" || ac.LossCheck != agent.DefaultLossCheck || al != (procFile{Log: logFile{Level: "info", Format: "text"}, CPUs: "auto"}) {
		t.Errorf("agent defaults: %+v %+v", ac, al)
	}
	if len(ac.Routes) != 1 || ac.Routes[0].StashConfigFile != "/srv/stash/config.yml" || ac.Routes[0].Service != "http://127.0.0.1:1" {
		t.Errorf("routes: %+v", ac.Routes)
	}

	p = writeFile(t, "agent.yaml", "relay: r:1\ntoken: test-token-0123456789\nloss_check: 0s\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n")
	if ac, _, err = loadAgentConfig(p); err != nil || ac.LossCheck != 0 {
		t.Errorf("loss_check 0s: %v, %v", ac.LossCheck, err)
	}
}

// The environment sets keys that the file leaves out, not only those it has.
func TestEnvironmentSetsMissingKeys(t *testing.T) {
	t.Setenv("BURROW_STATE_DIR", "/srv/burrow")
	t.Setenv("BURROW_PUBLIC_REDIRECT_HTTP", "false")
	t.Setenv("BURROW_TOKEN", "from-env-0123456789")
	t.Setenv("BURROW_LOSS_CHECK", "1m")
	rc, _, err := loadRelayConfig(writeFile(t, "relay.yaml", "public:\n  http: ':8080'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rc.StateDir != "/srv/burrow" || rc.Public.RedirectHTTP || rc.Public.HTTP != ":8080" {
		t.Errorf("relay: %+v", rc)
	}
	ac, _, err := loadAgentConfig(writeFile(t, "agent.yaml", "relay: r:1\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ac.Token != "from-env-0123456789" || ac.LossCheck != time.Minute {
		t.Errorf("agent: token %q loss_check %v", ac.Token, ac.LossCheck)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	p := writeFile(t, "agent.yaml", "relay: r:1\ntoken: from-file-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n")
	t.Setenv("BURROW_TOKEN", "from-env-0123456789")
	t.Setenv("BURROW_LOG_LEVEL", "debug")
	cfg, lf, err := loadAgentConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "from-env-0123456789" || lf.Log.Level != "debug" {
		t.Errorf("token %q level %q", cfg.Token, lf.Log.Level)
	}
}

func TestTokenNewJSON(t *testing.T) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"token", "new", "--json"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var got struct{ Token, Token_SHA256 string }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(got.Token))
	if got.Token_SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("token_sha256 %q is not the sha256 of %q", got.Token_SHA256, got.Token)
	}
	if len(got.Token) < 43 || strings.ContainsAny(got.Token, "+/=") {
		t.Errorf("token %q is not 256 bits of URL-safe text", got.Token)
	}
}

func TestFingerprintCreatesIdentity(t *testing.T) {
	state := t.TempDir()
	p := writeFile(t, "relay.yaml", "state_dir: "+state+"\n")
	run := func() string {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{"relay", "fingerprint", "--config", p})
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	a, b := run(), run()
	if !strings.HasPrefix(a, "sha256:") || len(a) != 7+64 || a != b {
		t.Errorf("fingerprints %q then %q", a, b)
	}
	if _, err := os.Stat(filepath.Join(state, "tunnel.key")); err != nil {
		t.Error(err)
	}
}

// relay: is one address or a list, in the file or the environment.
func TestRelayList(t *testing.T) {
	const routes = "token: test-token-0123456789\nroutes:\n  - host: a.b\n    service: http://127.0.0.1:1\n"
	for _, c := range []struct {
		name, body, env string
		want            []string
	}{
		{"one", "relay: a.example:7835\n", "", []string{"a.example:7835"}},
		{"list", "relay: [a.example:7835, \"b.example:7835\"]\n", "", []string{"a.example:7835", "b.example:7835"}},
		{"environment", "", "a.example:7835, b.example:7835", []string{"a.example:7835", "b.example:7835"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("BURROW_RELAY", c.env)
			}
			cfg, _, err := loadAgentConfig(writeFile(t, "agent.yaml", c.body+routes))
			if err != nil {
				t.Fatal(err)
			}
			if got := append([]string{cfg.Relay}, cfg.Relays...); !slices.Equal(got, c.want) {
				t.Errorf("relays %q, want %q", got, c.want)
			}
			if cfg.ConnectionsPerRelay != 1 || cfg.RelayRefresh != agent.DefaultRelayRefresh {
				t.Errorf("connections_per_relay %d, relay_refresh %v: want the defaults", cfg.ConnectionsPerRelay, cfg.RelayRefresh)
			}
		})
	}
	_, _, err := loadAgentConfig(writeFile(t, "agent.yaml", "relay: [a.example:7835, b.example]\n"+routes))
	if err == nil || !strings.Contains(err.Error(), "relay[1]") {
		t.Errorf("a relay without a port: %v, want an error naming relay[1]", err)
	}
}
