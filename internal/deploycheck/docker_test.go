package deploycheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of a compose file these checks read.
type composeFile struct {
	Services map[string]struct {
		Build struct {
			Context    string            `yaml:"context"`
			Dockerfile string            `yaml:"dockerfile"`
			Args       map[string]string `yaml:"args"`
		} `yaml:"build"`
		Entrypoint      []string `yaml:"entrypoint"`
		Command         []string `yaml:"command"`
		Volumes         []string `yaml:"volumes"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// binPath is where the Dockerfile puts the binary.
const binPath = "/usr/local/bin/burrow"

func TestDockerfile(t *testing.T) {
	body := readFile(t, filepath.Join(repoRoot(t), "deploy", "Dockerfile"))
	for _, want := range []string{
		"ARG VERSION=dev",
		"CGO_ENABLED=0",
		"-X main.version=${VERSION}",
		"COPY --from=build /burrow " + binPath,
		`ENTRYPOINT ["` + binPath + `"]`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("deploy/Dockerfile has no %q", want)
		}
	}
}

// TestComposeFiles parses both compose files and checks what they name: the
// build context and Dockerfile exist, the version is stamped, the config
// comes from the user's folder (never the tracked examples), read-only.
func TestComposeFiles(t *testing.T) {
	root := repoRoot(t)
	deploy := filepath.Join(root, "deploy")
	for _, c := range []struct {
		file, service string
		entrypoint    []string
		command       []string
		mounts        map[string]string // container path → mode
	}{
		{"compose.relay.yaml", "relay", []string{binPath, "relay"}, nil,
			map[string]string{"/etc/burrow": "ro", "/var/lib/burrow": "rw"}},
		{"compose.agent.yaml", "agent", []string{binPath}, []string{"agent"},
			map[string]string{"/etc/burrow": "ro", "/config": "ro"}},
	} {
		t.Run(c.file, func(t *testing.T) {
			var f composeFile
			dec := yaml.NewDecoder(strings.NewReader(readFile(t, filepath.Join(deploy, c.file))))
			if err := dec.Decode(&f); err != nil {
				t.Fatalf("%s: %v", c.file, err)
			}
			s, ok := f.Services[c.service]
			if !ok || len(f.Services) != 1 {
				t.Fatalf("%s: services %v, want just %q", c.file, keys(f.Services), c.service)
			}
			ctx := filepath.Join(deploy, s.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
				t.Errorf("build.context %q is not the module's root: %v", s.Build.Context, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("build.dockerfile %q: %v", s.Build.Dockerfile, err)
			}
			if v := s.Build.Args["VERSION"]; !strings.Contains(v, "BURROW_VERSION") {
				t.Errorf("build.args.VERSION = %q, want it from $BURROW_VERSION", v)
			}
			if !slices.Equal(s.Entrypoint, c.entrypoint) || !slices.Equal(s.Command, c.command) {
				t.Errorf("entrypoint %q command %q, want %q %q", s.Entrypoint, s.Command, c.entrypoint, c.command)
			}
			if s.StopGracePeriod != "40s" {
				t.Errorf("stop_grace_period %q, want 40s (shutdown_grace is 30s)", s.StopGracePeriod)
			}
			got := map[string]string{}
			for _, v := range s.Volumes {
				parts := strings.Split(interpolate(v), ":")
				if len(parts) < 2 {
					t.Errorf("volume %q is not source:target[:mode]", v)
					continue
				}
				src, dst, mode := parts[0], parts[1], "rw"
				if len(parts) > 2 {
					mode = parts[2]
				}
				got[dst] = mode
				switch {
				case strings.HasPrefix(v, "${"):
					// The user's folder, with a default or a required-variable message.
				case strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/"):
					t.Errorf("volume %q mounts a fixed path; the user's folders come from variables", v)
				default:
					if _, ok := f.Volumes[src]; !ok {
						t.Errorf("volume %q names no volume declared in %s", v, c.file)
					}
				}
				if strings.Contains(src, "deploy") || strings.HasSuffix(src, ".yaml") {
					t.Errorf("volume %q mounts a tracked example; users copy them to their own folder", v)
				}
			}
			if !maps(got, c.mounts) {
				t.Errorf("mounts %v, want %v", got, c.mounts)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestDockerignore: the build context leaves out the repository's history and
// build output, and keeps every file the build reads.
func TestDockerignore(t *testing.T) {
	root := repoRoot(t)
	var patterns []string
	for _, l := range strings.Split(readFile(t, filepath.Join(root, ".dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") || strings.Contains(l, "**") {
			t.Fatalf(".dockerignore: %q: this check reads plain patterns only", l)
		}
		patterns = append(patterns, strings.Trim(l, "/"))
	}
	ignored := func(path string) bool {
		// A pattern matches the path or one of its parent folders.
		for p := path; p != "." && p != "/"; p = filepath.Dir(p) {
			for _, pat := range patterns {
				if ok, _ := filepath.Match(pat, p); ok {
					return true
				}
			}
		}
		return false
	}
	for _, p := range []string{".git", "bin/burrow", "dist/SHA256SUMS"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s", p)
		}
	}

	// Every tracked file a Go build of ./cmd/burrow can read: sources and embedded files.
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{"\n"}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}`, "./cmd/burrow")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, l := range strings.Split(string(out), "\n") {
		if rel, err := filepath.Rel(root, l); err == nil && l != "" && !strings.HasPrefix(rel, "..") {
			needed = append(needed, rel)
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, p := range needed {
		if ignored(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}

// varRE is a compose variable: ${NAME}, ${NAME:-default} or ${NAME:?message}.
var varRE = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(?::([-?])([^}]*))?\}`)

// interpolate replaces compose variables as compose would with none of them
// set: by the default, or by /NAME where the variable is required.
func interpolate(s string) string {
	return varRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := varRE.FindStringSubmatch(m)
		if sub[2] == "-" {
			return sub[3]
		}
		return "/" + sub[1]
	})
}
