package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// maxAgentExposure is the highest `systemd-analyze security` score (0 safe,
// 10 exposed) the agent's unit may have.
const maxAgentExposure = 4.0

// maxRelayExposure bounds the relay's, which must keep CAP_NET_BIND_SERVICE
// and the host's user namespace to bind ports 80 and 443.
const maxRelayExposure = 4.0

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSystemdUnits runs `systemd-analyze verify` (no warning allowed) and
// `systemd-analyze security --offline=yes` on both units.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd); the units are not checked")
	}
	src := filepath.Join(repoRoot(t), "deploy", "systemd")
	for _, c := range []struct {
		unit string
		max  float64
		want []string // lines the unit must have
	}{
		{"burrow-agent.service", maxAgentExposure, []string{
			"DynamicUser=yes",
			"LoadCredential=burrow-token:/etc/burrow/agent.token",
			"ConfigurationDirectory=burrow",
			"ExecStart=/usr/local/bin/burrow agent --config /etc/burrow/agent.yaml",
			"ExecReload=/bin/kill -HUP $MAINPID",
		}},
		{"burrow-relay.service", maxRelayExposure, []string{
			"DynamicUser=yes",
			"AmbientCapabilities=CAP_NET_BIND_SERVICE",
			"CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
			"ConfigurationDirectory=burrow",
			"StateDirectory=burrow",
			"ExecStart=/usr/local/bin/burrow relay --config /etc/burrow/relay.yaml",
			"ExecReload=/bin/kill -HUP $MAINPID",
		}},
	} {
		t.Run(c.unit, func(t *testing.T) {
			body := readFile(t, filepath.Join(src, c.unit))
			lines := strings.Split(body, "\n")
			for _, w := range c.want {
				if !containsLine(lines, w) {
					t.Errorf("%s has no line %q", c.unit, w)
				}
			}

			// verify checks that ExecStart's binary exists: point it at a stand-in.
			dir := t.TempDir()
			stub := filepath.Join(dir, "burrow")
			if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(dir, c.unit)
			if err := os.WriteFile(unit, []byte(strings.ReplaceAll(body, "/usr/local/bin/burrow", stub)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(sa, "verify", "--man=no", unit).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", c.unit, err, out)
			}

			out, err = exec.Command(sa, "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
			m := exposureRE.FindSubmatch(out)
			if m == nil {
				t.Fatalf("systemd-analyze security --offline=yes %s: %v; no exposure level in:\n%s", c.unit, err, out)
			}
			score, err := strconv.ParseFloat(string(m[1]), 64)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("systemd-analyze security: %s exposure %.1f", c.unit, score)
			if score > c.max {
				t.Errorf("%s: exposure %.1f, want at most %.1f; systemd-analyze says:\n%s", c.unit, score, c.max, out)
			}
		})
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
