package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// credentialName is the systemd credential the agent reads its token from
// (LoadCredential=burrow-token:/etc/burrow/agent.token) when agent.yaml sets
// neither token nor token_file.
const credentialName = "burrow-token"

// tokenSource is the file that holds the agent's token, for the start-up
// permission check.
type tokenSource struct {
	// File is agent.yaml, the token_file, or the systemd credential; "" when
	// the token comes from $BURROW_TOKEN (or there is none).
	File string
	// InConfig is set when File is agent.yaml.
	InConfig bool
}

// resolveToken fills f.Token from token_file, or from the systemd credential,
// when agent.yaml (at path) has no inline token, and says where it came from.
func resolveToken(path string, f *agentFile) (tokenSource, error) {
	switch {
	case f.Token != "" && f.TokenFile != "":
		return tokenSource{}, errors.New("token_file: set together with token (in agent.yaml or $BURROW_TOKEN); keep one of them (token_file keeps the secret out of agent.yaml)")
	case f.Token != "":
		if os.Getenv("BURROW_TOKEN") != "" {
			return tokenSource{}, nil
		}
		return tokenSource{File: path, InConfig: true}, nil
	case f.TokenFile != "":
		p := f.TokenFile
		if !filepath.IsAbs(p) {
			// Relative to agent.yaml, named in full in messages.
			if abs, err := filepath.Abs(filepath.Join(filepath.Dir(path), p)); err == nil {
				p = abs
			}
		}
		tok, err := readTokenFile(p)
		if err != nil {
			return tokenSource{}, fmt.Errorf("token_file: %w", err)
		}
		f.Token = tok
		return tokenSource{File: p}, nil
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return tokenSource{}, nil
	}
	p := filepath.Join(dir, credentialName)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return tokenSource{}, nil
	}
	tok, err := readTokenFile(p)
	if err != nil {
		return tokenSource{}, fmt.Errorf("token (from the systemd credential %s): %w", credentialName, err)
	}
	f.Token = tok
	return tokenSource{File: p}, nil
}

// readTokenFile reads a file that holds only a token, as `burrow token new`
// prints it; surrounding white space (a final newline) is dropped.
func readTokenFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w; put the token from `burrow token new` in it (chmod 600), or fix the path", err)
	case errors.Is(err, fs.ErrPermission):
		return "", fmt.Errorf("%w; make it readable by the user the agent runs as, or under systemd load it with LoadCredential=%s:%s and leave token_file unset", err, credentialName, p)
	case err != nil:
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty; put the token from `burrow token new` in it", p)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s must hold only the token, on one line (as `burrow token new` prints it), not YAML or several lines", p)
	}
	return tok, nil
}

// warnTokenReadable logs a warning when the file holding the agent's token
// can be read by users other than its owner.
func warnTokenReadable(log *slog.Logger, src tokenSource) {
	file := src.File
	if file == "" || runtime.GOOS == "windows" {
		return
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm()&0o044 == 0 {
		return
	}
	fix := "chmod 600 " + file
	if src.InConfig {
		fix += fmt.Sprintf(", or move the token into a file of its own (token_file, or LoadCredential=%s:FILE under systemd) and keep that one private", credentialName)
	}
	log.Warn("the file holding the agent's token is readable by other users", "file", file,
		"mode", fmt.Sprintf("%04o", fi.Mode().Perm()), "fix", fix)
}
