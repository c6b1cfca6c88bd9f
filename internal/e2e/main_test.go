package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/burrow-tunnel/burrow/internal/origin"
	"go.uber.org/goleak"
)

// burrowBin is the binary under test, built once by TestMain (without -race:
// the processes are the product, the race detector watches this package).
var burrowBin string

// largeFilePath is the origin's /files/large.bin on disk, written once by
// TestMain: the origin sends it as Stash sends a video, by sendfile, not by
// computing and copying every byte (which, with two hundred stalled
// downloads, made the test process itself the slowest part of the site).
var largeFilePath string

func TestMain(m *testing.M) { goleak.VerifyTestMain(withBinary{m}) }

// withBinary builds the binary before the tests and removes it after them,
// inside goleak's Run so that the leak check still sees every test.
type withBinary struct{ m *testing.M }

func (w withBinary) Run() int {
	dir, err := os.MkdirTemp("", "burrow-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	burrowBin, err = buildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	largeFilePath = filepath.Join(dir, "large.bin")
	if err := origin.WriteLargeFile(largeFilePath, largeSize); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the origin's large file:", err)
		return 1
	}
	return w.m.Run()
}

// buildBinary builds ./cmd/burrow of this module into dir.
func buildBinary(dir string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a module (go env GOMOD = %q)", gomod)
	}
	bin := filepath.Join(dir, "burrow")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/burrow")
	cmd.Dir = filepath.Dir(gomod)
	// The tests run with -race; the binary need not, and builds far faster without.
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/burrow: %w\n%s", err, out)
	}
	return bin, nil
}
