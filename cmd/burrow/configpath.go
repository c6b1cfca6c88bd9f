package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// configDirs are where relay.yaml and agent.yaml are looked for, in order,
// when neither --config nor $BURROW_CONFIG names the file.
var configDirs = []string{"/etc/burrow", "."}

// configPath returns the config file to read: path (from --config, which
// defaults to $BURROW_CONFIG) when set, else the first of configDirs holding
// name. The error when there is none names every path tried.
func configPath(path, name string) (string, error) {
	if path == "" {
		path = os.Getenv("BURROW_CONFIG")
	}
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return "", unreadable(path, err)
		}
		f.Close()
		return path, nil
	}
	tried := []string{"$BURROW_CONFIG (unset)"}
	for _, dir := range configDirs {
		p := dir + string(filepath.Separator) + name
		f, err := os.Open(p)
		if err == nil {
			f.Close()
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", unreadable(p, err)
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no config file: tried %s; pass --config FILE or create %s (deploy/%s is a commented example)",
		strings.Join(tried, ", "), filepath.Join(configDirs[0], name), name)
}

// unreadable explains a config file that cannot be opened; a permission
// error is most often a file made private for the token, which a systemd
// unit's own user (DynamicUser=) then cannot read.
func unreadable(path string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("config file: %w", err)
	}
	return fmt.Errorf("config file: %w; burrow runs as user %d here (under its systemd unit, a user of its own): "+
		"make the file readable (chmod 644 %s) and keep the agent's token out of it, in /etc/burrow/agent.token (LoadCredential=%s:…) or a token_file",
		err, os.Geteuid(), path, credentialName)
}
