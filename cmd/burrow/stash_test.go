package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/relaytest"
	"github.com/burrow-tunnel/burrow/relay"
)

// startTestRelay runs a relay on loopback and returns its tunnel address, fingerprint and public http port.
func startTestRelay(t *testing.T, token string, hosts ...string) (tunnel, fingerprint string, httpPort int) {
	t.Helper()
	s := relaytest.Start(t, relay.Config{Agents: []relay.AgentGrant{relaytest.Grant("nas", token, hosts...)}},
		slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	return s.TunnelAddr().String(), s.TunnelFingerprint(), s.HTTPAddr().(*net.TCPAddr).Port
}

func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestStashCheckAndSetExternalHost(t *testing.T) {
	tunnel, fp, port := startTestRelay(t, "test-token-0123456789", "stash.example.com")
	public := fmt.Sprintf("http://stash.example.com:%d", port)
	dir := t.TempDir()
	stashCfg := filepath.Join(dir, "config.yml")
	agentCfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(agentCfg, []byte(fmt.Sprintf(`relay: %q
relay_fingerprint: %q
token: test-token-0123456789
transport: tcp
routes:
  - host: stash.example.com
    prefix: /stash
    service: http://127.0.0.1:9999
    stash:
      config_file: %q
`, tunnel, fp, stashCfg)), 0o600)

	const base = "# Stash config\nstash:\n  - path: /data\ndatabase: /root/.stash/stash-go.sqlite\napi_key: \"\"\n"
	cases := []struct {
		name, body string
		ok         bool
		want       string
	}{
		{"unset", base, true, "unset"},
		{"equal", base + "external_host: " + public + "\n", true, "equal"},
		{"different", base + "external_host: http://192.168.1.10:9999\n", false, "external_host: " + public},
		{"malformed", "stash: [\n", false, "error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			os.WriteFile(stashCfg, []byte(c.body), 0o644)
			out, err := runCmd(t, "stash", "check", "--config", agentCfg)
			if (err == nil) != c.ok {
				t.Errorf("err = %v, want ok=%v\n%s", err, c.ok, out)
			}
			if !strings.Contains(out, c.want) || !strings.Contains(out, public+"/stash") {
				t.Errorf("output lacks %q or the public URL:\n%s", c.want, out)
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		os.Remove(stashCfg)
		os.Mkdir(stashCfg, 0o755) // a directory cannot be read as a file, even by root
		defer os.Remove(stashCfg)
		out, err := runCmd(t, "stash", "check", "--config", agentCfg)
		if err == nil || !strings.Contains(out, "error") {
			t.Errorf("err = %v\n%s", err, out)
		}
	})
	t.Run("set-external-host", func(t *testing.T) {
		orig := base + "external_host: http://192.168.1.10:9999  # old\n"
		os.WriteFile(stashCfg, []byte(orig), 0o640)
		out, err := runCmd(t, "stash", "set-external-host", "--config", agentCfg)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		got, _ := os.ReadFile(stashCfg)
		if want := base + "external_host: " + public + "  # old\n"; string(got) != want {
			t.Errorf("config.yml now:\n%s\nwant:\n%s", got, want)
		}
		bak, _ := os.ReadFile(stashCfg + ".bak")
		if string(bak) != orig {
			t.Errorf("backup differs from the original")
		}
		if !strings.Contains(out, "Restart Stash") {
			t.Errorf("output does not say to restart Stash: %s", out)
		}
		if out, err := runCmd(t, "stash", "check", "--config", agentCfg); err != nil {
			t.Errorf("check after set: %v\n%s", err, out)
		}
	})
}
