package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two routes to one Stash on two hosts, a prefix route, and a service that is not Stash.
func TestStashCheckManyRoutes(t *testing.T) {
	tunnel, fp, port := startTestRelay(t, testToken, "stash.example.com", "media.example.com", "site.example.com")
	a := fmt.Sprintf("http://stash.example.com:%d", port)
	b := fmt.Sprintf("http://media.example.com:%d", port)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not stash")) }))
	defer site.Close()
	dir := t.TempDir()
	stashCfg := filepath.Join(dir, "config.yml")
	agentCfg := filepath.Join(dir, "agent.yaml")
	// Only the first route names config.yml: the second, to the same service, shares it.
	os.WriteFile(agentCfg, []byte(fmt.Sprintf(`relay: %q
relay_fingerprint: %q
token: %s
transport: tcp
routes:
  - host: stash.example.com
    prefix: /stash
    service: http://127.0.0.1:9999
    stash:
      config_file: %q
  - host: media.example.com
    service: http://127.0.0.1:9999
  - host: site.example.com
    service: %s
`, tunnel, fp, testToken, stashCfg, site.URL)), 0o600)

	t.Run("unset serves both", func(t *testing.T) {
		os.WriteFile(stashCfg, []byte("stash: []\n"), 0o644)
		out, err := runCmd(t, "stash", "check", "--config", agentCfg)
		if err != nil {
			t.Errorf("check: %v\n%s", err, out)
		}
		for _, want := range []string{
			fmt.Sprintf("  external_host is not set in %s: good. Stash builds its URLs from the forwarded headers, so %s/stash and LAN access both work.\n", stashCfg, a),
			fmt.Sprintf("  external_host is not set in %s: good. Stash builds its URLs from the forwarded headers, so %s and LAN access both work.\n", stashCfg, b),
			"  forwarded headers: the agent reaches Stash from 127.0.0.1, a local address: Stash takes its X-Forwarded-For without trusted_proxies.\n",
			fmt.Sprintf("route site.example.com → %s\n  skipped: %s does not answer like Stash (set routes[].stash.config_file to check it anyway)\n", site.URL, site.URL),
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("external_host names one of two", func(t *testing.T) {
		os.WriteFile(stashCfg, []byte("external_host: "+a+"\n"), 0o644)
		out, err := runCmd(t, "stash", "check", "--config", agentCfg)
		if err == nil {
			t.Errorf("check passed:\n%s", out)
		}
		want := fmt.Sprintf("  This Stash is published at %s too, and external_host can name only one of them: delete the external_host line (with Stash stopped), which serves both.\n", b)
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})
	t.Run("set-external-host refuses", func(t *testing.T) {
		os.WriteFile(stashCfg, []byte("stash: []\n"), 0o644)
		out, err := runCmd(t, "stash", "set-external-host", "--config", agentCfg, "--host", "stash.example.com")
		want := fmt.Sprintf("external_host %s would send the visitors of %s to %s: this Stash (http://127.0.0.1:9999) is published at %s too. "+
			"external_host can name only one: leave it unset instead, which serves both: stop Stash, delete the external_host line from %s, "+
			"and start Stash again (Stash then builds each visitor's URLs from the headers Burrow sends)", a, b, a, b, stashCfg)
		if err == nil || err.Error() != want {
			t.Errorf("err:\n%v\nwant:\n%s\n%s", err, want, out)
		}
		if got, _ := os.ReadFile(stashCfg); string(got) != "stash: []\n" {
			t.Errorf("config.yml changed: %s", got)
		}
	})
	t.Run("not found is not checked", func(t *testing.T) {
		os.Remove(stashCfg)
		out, err := runCmd(t, "stash", "check", "--config", agentCfg)
		if err != nil {
			t.Errorf("check: %v\n%s", err, out)
		}
		want := fmt.Sprintf("  external_host: not checked: stash config.yml not found (tried %s, the route's stash.config_file)\n", stashCfg)
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	})
}
