package stash

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindConfig(t *testing.T) {
	home := t.TempDir()
	homeConfig := filepath.Join(home, ".stash", "config.yml")
	sys1 := filepath.Join(t.TempDir(), "root", ".stash", "config.yml")
	sys2 := filepath.Join(t.TempDir(), "config", "config.yml")
	system := []string{sys1, sys2}
	mk := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(sampleConfig), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing anywhere: the error names every place looked at.
	_, err := findConfig("", "", home, system)
	if !errors.Is(err, ErrConfigNotFound) {
		t.Fatalf("got %v, want ErrConfigNotFound", err)
	}
	for _, p := range []string{homeConfig, sys1, sys2} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}

	mk(sys2)
	if got, err := findConfig("", "", home, system); err != nil || got != sys2 {
		t.Fatalf("got %q %v, want %s", got, err, sys2)
	}
	mk(sys1)
	if got, err := findConfig("", "", home, system); err != nil || got != sys1 {
		t.Fatalf("got %q %v, want %s", got, err, sys1)
	}
	mk(homeConfig)
	if got, err := findConfig("", "", home, system); err != nil || got != homeConfig {
		t.Fatalf("got %q %v, want %s", got, err, homeConfig)
	}

	// STASH_CONFIG_FILE wins over the defaults, and is the only place
	// looked at when set, as in Stash.
	env := writeConfig(t, sampleConfig, 0o600)
	if got, err := findConfig("", env, home, system); err != nil || got != env {
		t.Fatalf("got %q %v, want %s", got, err, env)
	}
	missing := filepath.Join(t.TempDir(), "config.yml")
	if _, err := findConfig("", missing, home, system); !errors.Is(err, ErrConfigNotFound) ||
		!strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "STASH_CONFIG_FILE") {
		t.Fatalf("missing STASH_CONFIG_FILE: %v", err)
	}

	// An explicit path wins over everything.
	explicit := writeConfig(t, sampleConfig, 0o600)
	if got, err := findConfig(explicit, env, home, system); err != nil || got != explicit {
		t.Fatalf("got %q %v, want %s", got, err, explicit)
	}
	if _, err := findConfig(missing, env, home, system); !errors.Is(err, ErrConfigNotFound) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing explicit path: %v", err)
	}
	if _, err := findConfig(filepath.Dir(explicit), "", home, system); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory as explicit path: %v", err)
	}
}

func TestFindConfigSkipsDirectoriesAndDuplicates(t *testing.T) {
	home := t.TempDir()
	homeConfig := filepath.Join(home, ".stash", "config.yml")
	if err := os.MkdirAll(homeConfig, 0o755); err != nil { // a directory named config.yml
		t.Fatal(err)
	}
	// HOME=/root makes the home location and the first system one the same.
	_, err := findConfig("", "", home, []string{homeConfig})
	if !errors.Is(err, ErrConfigNotFound) || strings.Count(err.Error(), homeConfig) != 1 {
		t.Fatalf("got %v, want one mention of %s", err, homeConfig)
	}
}

func TestFindConfigPublic(t *testing.T) {
	t.Setenv("STASH_CONFIG_FILE", "")
	explicit := writeConfig(t, sampleConfig, 0o600)
	if got, err := FindConfig(explicit); err != nil || got != explicit {
		t.Fatalf("FindConfig(explicit) = %q, %v", got, err)
	}
	env := writeConfig(t, sampleConfig, 0o600)
	t.Setenv("STASH_CONFIG_FILE", env)
	if got, err := FindConfig(""); err != nil || got != env {
		t.Fatalf("FindConfig with STASH_CONFIG_FILE = %q, %v", got, err)
	}
}
