// Package stash holds the agent's Stash helpers: finding Stash's config.yml,
// checking and setting its external_host, and probing whether a Stash asks
// for a login before it is published.
package stash

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrConfigNotFound is returned (wrapped) by FindConfig when no config.yml exists.
var ErrConfigNotFound = errors.New("stash config.yml not found")

// systemConfigs are the fixed places Stash's Docker images keep config.yml:
// the official image sets STASH_CONFIG_FILE=/root/.stash/config.yml, and the
// community and rootless set-ups mount /config with STASH_CONFIG_FILE=/config/config.yml.
var systemConfigs = []string{
	"/root/.stash/config.yml",
	"/config/config.yml",
}

// FindConfig returns the path of Stash's config.yml: explicit if non-empty, else $STASH_CONFIG_FILE, else the first of $HOME/.stash/config.yml, /root/.stash/config.yml, /config/config.yml that exists.
//
// Stash also looks for config.yml in its own working directory before
// $HOME/.stash; the agent's working directory says nothing about Stash's, so
// it is not searched: pass that path explicitly.
func FindConfig(explicit string) (path string, err error) {
	home, _ := os.UserHomeDir()
	return findConfig(explicit, os.Getenv("STASH_CONFIG_FILE"), home, systemConfigs)
}

func findConfig(explicit, env, home string, system []string) (string, error) {
	// An explicit path or STASH_CONFIG_FILE is the only place Stash looks
	// when it is given one, so a missing file there is an error, not a
	// reason to fall back to the defaults.
	switch {
	case explicit != "":
		return onlyConfig(explicit, "route's stash.config_file")
	case env != "":
		return onlyConfig(env, "STASH_CONFIG_FILE")
	}

	var tried []string
	if home != "" {
		tried = append(tried, filepath.Join(home, ".stash", "config.yml"))
	}
	for _, p := range system {
		if !slices.Contains(tried, p) { // HOME is often /root
			tried = append(tried, p)
		}
	}
	for _, p := range tried {
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("stash config %s: %w", p, err)
		}
	}
	return "", fmt.Errorf("%w (tried %s): set routes[].stash.config_file in agent.yaml to its path, or STASH_CONFIG_FILE", ErrConfigNotFound, strings.Join(tried, ", "))
}

// onlyConfig checks the one path Stash would use.
func onlyConfig(path, from string) (string, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%w (tried %s, the %s)", ErrConfigNotFound, path, from)
	case err != nil:
		return "", fmt.Errorf("stash config %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("stash config %s (the %s) is not a regular file", path, from)
	}
	return path, nil
}
