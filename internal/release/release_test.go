package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the module's root, where the Makefile is.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func needReleaseCheck(t *testing.T) {
	t.Helper()
	if os.Getenv("BURROW_RELEASE_CHECK") == "" {
		t.Skip("cross-compiles every release platform; runs with BURROW_RELEASE_CHECK=1 (`make release-check`, part of `make test`)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed to check the Makefile's targets: %v", err)
	}
}

// runMake runs make with args in the repository's root. VERSION is left to
// the Makefile, which takes it from git.
func runMake(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("make", args...)
	cmd.Dir = repoRoot(t)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VERSION=") && !strings.HasPrefix(kv, "GOFLAGS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// gitVersion is what the Makefile stamps: `git describe --tags --always --dirty`.
func gitVersion(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("git", "describe", "--tags", "--always", "--dirty")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git describe: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// checkStaticELF fails unless f is an ELF executable for machine with no
// program interpreter and no shared library: the kernel runs it as it is,
// on glibc and musl systems alike.
func checkStaticELF(t *testing.T, name string, r io.ReaderAt, machine elf.Machine) {
	t.Helper()
	f, err := elf.NewFile(r)
	if err != nil {
		t.Errorf("%s: not an ELF file: %v", name, err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", name, f.Machine, machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		t.Errorf("%s: ELF type %v, want an executable", name, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: has a program interpreter (PT_INTERP): dynamically linked", name)
		}
	}
	libs, err := f.DynValue(elf.DT_NEEDED)
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("%s: reading DT_NEEDED: %v", name, err)
	}
	if len(libs) > 0 {
		names, _ := f.ImportedLibraries()
		t.Errorf("%s: needs shared libraries (DT_NEEDED): %v", name, names)
	}
}

// TestReleaseStaticBuild: `make build` gives a static ELF that says so and
// carries git's version.
func TestReleaseStaticBuild(t *testing.T) {
	needReleaseCheck(t)
	bin := filepath.Join(t.TempDir(), "burrow")
	runMake(t, "build", "BIN="+bin)

	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkStaticELF(t, bin, f, elf.EM_X86_64)

	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("burrow version: %v", err)
	}
	for _, want := range []string{"burrow " + gitVersion(t) + " ", "CGO_ENABLED=0", "static binary"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("burrow version says %q, want %q in it", out, want)
		}
	}
}

// TestReleaseArchives: `make release` gives one archive per platform, each
// with the binary, the README, the example configs and the systemd units, and
// SHA256SUMS lists every archive with its right sum.
func TestReleaseArchives(t *testing.T) {
	needReleaseCheck(t)
	dist := t.TempDir()
	runMake(t, "release", "DIST="+dist)
	version := gitVersion(t)

	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	archives, err := filepath.Glob(filepath.Join(dist, "*.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for name := range sums {
		listed = append(listed, name)
	}
	var found []string
	for _, a := range archives {
		found = append(found, filepath.Base(a))
	}
	slices.Sort(listed)
	slices.Sort(found)
	if !slices.Equal(listed, found) {
		t.Errorf("SHA256SUMS lists %v; dist holds %v", listed, found)
	}
	for name, want := range sums {
		body, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if got := sha256.Sum256(body); hex.EncodeToString(got[:]) != want {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, got, want)
		}
	}

	linux := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armv7": elf.EM_ARM}
	for arch, machine := range linux {
		base := "burrow_" + version + "_linux_" + arch
		members := readArchive(t, filepath.Join(dist, base+".tar.gz"))
		for _, m := range []string{"burrow", "README.md", "deploy/relay.yaml", "deploy/agent.yaml",
			"deploy/systemd/burrow-relay.service", "deploy/systemd/burrow-agent.service"} {
			if _, ok := members[base+"/"+m]; !ok {
				t.Errorf("%s.tar.gz has no %s/%s", base, base, m)
			}
		}
		if bin, ok := members[base+"/burrow"]; ok {
			checkStaticELF(t, base+"/burrow", bytes.NewReader(bin), machine)
		}
	}
	for _, other := range []string{"darwin_amd64", "darwin_arm64", "windows_amd64"} {
		if _, ok := sums["burrow_"+version+"_"+other+".tar.gz"]; !ok {
			t.Errorf("no %s archive", other)
		}
	}
}

// readSums parses `sha256sum` output: "<hex>  <name>" per line.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("%s: line %q is not \"<sha256>  <file>\"", path, sc.Text())
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(sums) == 0 {
		t.Fatalf("%s is empty", path)
	}
	return sums
}

// readArchive returns the regular files of a .tar.gz by name.
func readArchive(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, h.Name, err)
		}
		files[h.Name] = body
	}
}
