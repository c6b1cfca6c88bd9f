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
	if path != "" {
		return path, nil
	}
	if env := os.Getenv("BURROW_CONFIG"); env != "" {
		return env, nil
	}
	tried := []string{"$BURROW_CONFIG (unset)"}
	for _, dir := range configDirs {
		p := dir + string(filepath.Separator) + name
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("config file %s: %w", p, err)
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("no config file: tried %s; pass --config FILE or create %s (deploy/%s is a commented example)",
		strings.Join(tried, ", "), filepath.Join(configDirs[0], name), name)
}
