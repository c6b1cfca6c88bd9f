package main

import (
	"errors"
	"io/fs"
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
	fromEnv, fromFlag := filepath.Join(work, "env.yaml"), filepath.Join(work, "flag.yaml")
	touch(fromEnv)
	touch(fromFlag)
	t.Setenv("BURROW_CONFIG", fromEnv)
	if p, err := configPath("", "relay.yaml"); p != fromEnv {
		t.Errorf("$BURROW_CONFIG set: %q, %v", p, err)
	}
	if p, err := configPath(fromFlag, "relay.yaml"); p != fromFlag {
		t.Errorf("--config set: %q, %v", p, err)
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
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte("token: test-token-0123456789\ntransport: tcp\n"+agentRest), 0o600); err != nil {
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

func TestUnreadableConfigHint(t *testing.T) {
	err := unreadable("/etc/burrow/agent.yaml", &fs.PathError{Op: "open", Path: "/etc/burrow/agent.yaml", Err: fs.ErrPermission})
	for _, w := range []string{"permission denied", "chmod 644 /etc/burrow/agent.yaml", "LoadCredential=burrow-token:", "token_file"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q: %v", w, err)
		}
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("%v does not wrap fs.ErrPermission", err)
	}
	if _, err := configPath("/nonexistent/agent.yaml", "agent.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/agent.yaml") {
		t.Errorf("a missing --config file: %v", err)
	}
}
