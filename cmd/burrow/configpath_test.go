package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigPath(t *testing.T) {
	etc, work := t.TempDir(), t.TempDir()
	saved := configDirs
	configDirs = []string{etc, work}
	t.Cleanup(func() { configDirs = saved })
	t.Setenv("BURROW_CONFIG", "")

	// None exists: the error lists every place tried.
	_, err := configPath("", "relay.yaml")
	if err == nil {
		t.Fatal("no error without any config file")
	}
	for _, w := range []string{"$BURROW_CONFIG", filepath.Join(etc, "relay.yaml"), filepath.Join(work, "relay.yaml"), "--config"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %q: %v", w, err)
		}
	}

	touch := func(p string) {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	touch(filepath.Join(work, "relay.yaml"))
	if p, err := configPath("", "relay.yaml"); err != nil || p != filepath.Join(work, "relay.yaml") {
		t.Errorf("only the second dir has relay.yaml: %q, %v", p, err)
	}
	touch(filepath.Join(etc, "relay.yaml"))
	if p, err := configPath("", "relay.yaml"); err != nil || p != filepath.Join(etc, "relay.yaml") {
		t.Errorf("both dirs have relay.yaml: %q, %v; want the first", p, err)
	}
	if _, err := configPath("", "agent.yaml"); err == nil {
		t.Error("agent.yaml found where only relay.yaml is")
	}
	t.Setenv("BURROW_CONFIG", "/from/env.yaml")
	if p, _ := configPath("", "relay.yaml"); p != "/from/env.yaml" {
		t.Errorf("$BURROW_CONFIG set: %q", p)
	}
	if p, _ := configPath("/from/flag.yaml", "relay.yaml"); p != "/from/flag.yaml" {
		t.Errorf("--config set: %q", p)
	}
}

// The relay and the agent load their default file when no path is given.
func TestDefaultConfigLoads(t *testing.T) {
	dir := t.TempDir()
	saved := configDirs
	configDirs = []string{dir}
	t.Cleanup(func() { configDirs = saved })
	t.Setenv("BURROW_CONFIG", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte("token: t\ntransport: tcp\n"+agentRest), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := loadAgentConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Transport != "tcp" {
		t.Errorf("transport %q: the default agent.yaml was not read", cfg.Transport)
	}
	if _, _, err := loadRelayConfig(""); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "relay.yaml")) {
		t.Errorf("relay without relay.yaml: %v; want the path tried", err)
	}
}
