package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

// With two routes to one Stash on two hosts, the check when the agent
// connects covers both, and says that only deleting external_host serves both.
func TestStartupCheckCoversEveryRoute(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte("external_host: https://stash.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testutil.SyncBuffer{}
	a, err := New(Config{Relay: "relay.test:7835", RelayFingerprint: "sha256:" + strings.Repeat("00", 32), Token: "tok",
		Routes: []Route{
			{Host: "stash.example.com", Service: "http://127.0.0.1:9999", StashConfigFile: cfgPath},
			{Host: "media.example.com", Service: "http://127.0.0.1:9999"},
		}}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	a.checkStashConfigs([]publishedStash{
		{a.cfg.Routes[0], "https://stash.example.com"},
		{a.cfg.Routes[1], "https://media.example.com"},
	})
	out := logs.String()
	for _, want := range []string{
		`level=WARN msg="Stash external_host: external_host in ` + cfgPath + ` is https://stash.example.com, the public URL: this works, but LAN clients are sent to public URLs too.`,
		`This Stash is published at https://media.example.com too, and external_host can name only one of them: delete the external_host line (with Stash stopped), which serves both." host=stash.example.com`,
		`level=WARN msg="Stash external_host: external_host in ` + cfgPath + ` is https://stash.example.com, but Stash is published at https://media.example.com:`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	a.cfg.NoStashCheck = true
	logs2 := &testutil.SyncBuffer{}
	a.log = slog.New(slog.NewTextHandler(logs2, nil))
	a.checkStashConfigs([]publishedStash{{a.cfg.Routes[0], "https://stash.example.com"}})
	if logs2.String() != "" {
		t.Errorf("the demo's agent checked Stash: %s", logs2)
	}
}
