package main

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

const (
	testToken = "test-token-0123456789"
	agentHead = "relay: r:1\ntoken: " + testToken + "\n"
	route     = "routes:\n  - host: a.example.com\n    service: http://127.0.0.1:1\n"
)

var testHash = strings.Repeat("ab", 32)

// Each message of a file that does not load, exactly; FILE stands for the file's path.
func TestConfigErrorMessages(t *testing.T) {
	pasted := "cUCkJhX4qP9Bq7wE1xg6dO5hU2p1Y0lX3bQ9fZ8kTnA" // a token from `burrow token new`
	sum := sha256.Sum256([]byte(pasted))
	grant := func(hosts string) string {
		return "state_dir: /tmp/x\nagents:\n  - name: nas\n    token_sha256: " + testHash + "\n    hosts: " + hosts + "\n"
	}
	cases := []struct {
		name  string
		relay bool
		body  string
		env   map[string]string
		want  []string
	}{
		{"did you mean, nested", false, agentHead + route + "    servce: x\n", nil,
			[]string{"FILE: routes[0].servce: unknown key (did you mean routes[0].service?)"}},
		{"did you mean, top", false, agentHead + "transprt: tcp\n" + route, nil,
			[]string{"FILE: transprt: unknown key (did you mean transport?)"}},
		{"did you mean, under stash", false, agentHead + route + "    stash:\n      confg_file: x\n", nil,
			[]string{"FILE: routes[0].stash.confg_file: unknown key (did you mean routes[0].stash.config_file?)"}},
		{"no suggestion for a stranger", true, "state_dir: /tmp/x\ncolour: blue\n", nil,
			[]string{"FILE: colour: unknown key"}},
		{"grant localhost", true, grant("[localhost]"), nil,
			[]string{`FILE: agents[0].hosts[0]: "localhost" names the visitor's own machine, never this relay: grant a public DNS name (e.g. "stash.example.com")`}},
		{"grant an address", true, grant(`["127.0.0.1"]`), nil,
			[]string{`FILE: agents[0].hosts[0]: "127.0.0.1" is an IP address: grant a DNS name that points at this relay (e.g. "stash.example.com"); certificates and routes are by name`}},
		{"grant a top-level domain", true, grant("[com]"), nil,
			[]string{`FILE: agents[0].hosts[0]: "com" is a public suffix, not a host: grant a name under your own domain (e.g. "stash.example.com")`}},
		{"grant a public suffix", true, grant("[co.uk]"), nil,
			[]string{`FILE: agents[0].hosts[0]: "co.uk" is a public suffix, not a host: grant a name under your own domain (e.g. "stash.example.com")`}},
		{"grant every name under a domain", true, grant(`["*.com"]`), nil,
			[]string{`FILE: agents[0].hosts[0]: "*.com" would let the agent publish any name under "com", a public suffix: grant a wildcard under your own domain (e.g. "*.home.example.com")`}},
		{"hosts a number", true, grant("5"), nil,
			[]string{`FILE: agents[0].hosts[0]: "5" is not a host name: hosts is a list of DNS names, e.g. hosts: ["stash.example.com"]`}},
		{"one token for two agents", true, grant("[a.example.com]") + "  - name: tv\n    token_sha256: " + testHash + "\n    hosts: [b.example.com]\n", nil,
			[]string{`FILE: agents[1].token_sha256: is the same as agents[0]'s ("nas"): the relay could not tell the two agents apart; give each agent its own token (` + "`burrow token new`)"}},
		{"a token pasted as its hash", true, "state_dir: /tmp/x\nagents:\n  - name: nas\n    token_sha256: " + pasted + "\n    hosts: [a.example.com]\n", nil,
			[]string{`FILE: agents[0].token_sha256: this is the token itself, which belongs in agent.yaml: relay.yaml takes its hash, token_sha256: "` + hex.EncodeToString(sum[:]) + `" (the relay never needs the token)`}},
		{"a short token", false, "relay: r:1\ntoken: x\n" + route, nil,
			[]string{"FILE: token: is 1 character long, too short to keep the relay to you: use the token `burrow token new` prints (43 characters), and its token_sha256 in relay.yaml"}},
		{"a tcp service", false, agentHead + "routes:\n  - host: a.example.com\n    service: tcp://127.0.0.1:22\n", nil,
			[]string{`FILE: routes[0].service: "tcp://127.0.0.1:22": the relay has no public TCP listener for tcp:// routes; publish an HTTP service as http://host:port`}},
		{"log level from the environment", false, agentHead + route, map[string]string{"BURROW_LOG_LEVEL": "bogus"},
			[]string{`environment variable BURROW_LOG_LEVEL: log.level: "bogus" is not one of debug, info, warn, error (the environment overrides FILE)`}},
		{"transport from the environment", false, agentHead + route, map[string]string{"BURROW_TRANSPORT": "udp"},
			[]string{`environment variable BURROW_TRANSPORT: transport: "udp" is not one of auto, quic, tcp (the environment overrides FILE)`}},
		{"YAML error on line 2", false, "relay: r:1\ntoken: [x\n", nil,
			[]string{"FILE: not valid YAML: line 2: did not find expected ',' or ']'"}},
		{"YAML scanner error on line 2", false, "relay: r:1\n\ttoken: x\n", nil,
			[]string{"FILE: not valid YAML: line 2: found a tab character that violates indentation"}},
		{"YAML key twice", false, agentHead + "relay: r:2\n" + route, nil,
			[]string{"FILE: not valid YAML: unmarshal errors:\n  line 3: mapping key \"relay\" already defined at line 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
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
			var got []string
			if j, ok := err.(interface{ Unwrap() []error }); ok && !strings.HasPrefix(c.name, "YAML") {
				for _, e := range j.Unwrap() {
					got = append(got, e.Error())
				}
			} else {
				got = []string{err.Error()}
			}
			var want []string
			for _, w := range c.want {
				want = append(want, strings.ReplaceAll(w, "FILE", p))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestPublicNamesPass(t *testing.T) {
	for _, h := range []string{"stash.example.com", "*.home.example.com", "nas.lan", "example.co.uk", "*.example.co.uk"} {
		if why := publicNameProblem(h); why != "" {
			t.Errorf("%s: %s", h, why)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"servce", "service", 1}, {"transprt", "transport", 1}, {"abc", "", 3}, {"kitten", "sitting", 3}} {
		if got := editDistance(c.a, c.b); got != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}
