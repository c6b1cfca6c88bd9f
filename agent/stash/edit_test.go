package stash

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const setLine = "external_host: https://stash.example.com"

// mustSet runs SetExternalHost and checks what every successful edit
// promises: the .bak holds the original, both files keep the original mode,
// no temporary file is left behind, and Check now agrees.
func mustSet(t *testing.T, p string) (before, after string) {
	t.Helper()
	before = readFile(t, p)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	bak, err := SetExternalHost(p, public+"/")
	if err != nil {
		t.Fatal(err)
	}
	if bak != p+".bak" {
		t.Fatalf("backup %q, want %q", bak, p+".bak")
	}
	if got := readFile(t, bak); got != before {
		t.Fatalf("backup differs from the original:\n%s", got)
	}
	for _, f := range []string{p, bak} {
		got, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if got.Mode() != fi.Mode() {
			t.Errorf("%s: mode %v, want %v", f, got.Mode(), fi.Mode())
		}
	}
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want config.yml and config.yml.bak", names)
	}
	r, err := Check(p, public)
	if err != nil || r.Verdict != Equal {
		t.Fatalf("Check after edit: %v %v", r.Verdict, err)
	}
	return before, readFile(t, p)
}

// sameExcept checks that after has the lines of before, byte for byte,
// except line i (0-based), which must read want.
func sameExcept(t *testing.T, before, after string, i int, want string) {
	t.Helper()
	b, a := strings.SplitAfter(before, "\n"), strings.SplitAfter(after, "\n")
	if len(a) != len(b) {
		t.Fatalf("%d lines before, %d after:\n%s", len(b), len(a), after)
	}
	for j := range b {
		if j == i {
			if strings.TrimRight(a[j], "\r\n") != want {
				t.Errorf("line %d = %q, want %q", j+1, a[j], want)
			}
			continue
		}
		if a[j] != b[j] {
			t.Errorf("line %d changed: %q -> %q", j+1, b[j], a[j])
		}
	}
}

func TestSetExternalHostAppends(t *testing.T) {
	p := writeConfig(t, sampleConfig, 0o640)
	before, after := mustSet(t, p)
	if after != before+setLine+"\n" {
		t.Fatalf("want the original plus one line, got:\n%s", after)
	}
}

func TestSetExternalHostReplacesKeepingComment(t *testing.T) {
	lines := strings.SplitAfter(sampleConfig, "\n")
	at := 12 // after "generated:", among the other keys
	old := "external_host: http://192.168.1.20:9999   # LAN address, for the old nginx\n"
	content := strings.Join(lines[:at], "") + old + strings.Join(lines[at:], "")
	p := writeConfig(t, content, 0o600)
	before, after := mustSet(t, p)
	sameExcept(t, before, after, at, setLine+"   # LAN address, for the old nginx")
}

func TestSetExternalHostReplaces(t *testing.T) {
	for name, tc := range map[string]struct {
		content string
		line    int
		want    string
	}{
		"plain":          {"external_host: http://192.168.1.20:9999\n" + sampleConfig, 0, setLine},
		"quoted":         {"port: 9999\nexternal_host: 'http://nas.local:9999'\nhost: 0.0.0.0\n", 1, setLine},
		"quoted hash":    {"port: 9999\nexternal_host: \"http://nas.local:9999/#x\" # old\n", 1, setLine + " # old"},
		"null":           {"port: 9999\nexternal_host:\nhost: 0.0.0.0\n", 1, setLine},
		"null comment":   {"port: 9999\nexternal_host:    # fill in\nhost: 0.0.0.0\n", 1, setLine + "    # fill in"},
		"spaced colon":   {"port: 9999\nexternal_host :  http://nas.local:9999\n", 1, setLine},
		"last, no EOL":   {"port: 9999\nexternal_host: http://nas.local:9999", 1, setLine},
		"CRLF":           {"port: 9999\r\nexternal_host: http://nas.local:9999 # old\r\nhost: 0.0.0.0\r\n", 1, setLine + " # old"},
		"same but slash": {"port: 9999\nexternal_host: https://stash.example.com/\n", 1, setLine},
	} {
		t.Run(name, func(t *testing.T) {
			// The line edit, not the re-encoding fallback, must handle these.
			top, err := parseTop([]byte(tc.content))
			if err != nil {
				t.Fatal(err)
			}
			if out, ok := editText([]byte(tc.content), top, public); !ok || verifyEdit(top, out, public) != nil {
				t.Fatalf("line edit failed: ok=%v %q", ok, out)
			}
			p := writeConfig(t, tc.content, 0o600)
			before, after := mustSet(t, p)
			sameExcept(t, before, after, tc.line, tc.want)
		})
	}
}

func TestSetExternalHostNoTrailingNewline(t *testing.T) {
	content := strings.TrimSuffix(sampleConfig, "\n")
	p := writeConfig(t, content, 0o600)
	_, after := mustSet(t, p)
	if after != content+"\n"+setLine+"\n" {
		t.Fatalf("got:\n%s", after)
	}
}

func TestSetExternalHostCRLF(t *testing.T) {
	content := strings.ReplaceAll(sampleConfig, "\n", "\r\n")
	p := writeConfig(t, content, 0o600)
	_, after := mustSet(t, p)
	if after != content+setLine+"\r\n" {
		t.Fatalf("got:\n%q", after[len(after)-80:])
	}
}

func TestSetExternalHostEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# Stash has not started yet\n"} {
		p := writeConfig(t, content, 0o600)
		_, after := mustSet(t, p)
		if after != content+setLine+"\n" {
			t.Fatalf("got %q", after)
		}
	}
}

// A value the line edit cannot replace (here a folded block scalar) falls
// back to re-encoding the document; every other setting must survive.
func TestSetExternalHostReencodes(t *testing.T) {
	content := "# owner's note\nport: 9999\nexternal_host: >-\n  http://nas.local:9999\nstash:\n  - path: /data/\n    excludevideo: false\nusername: admin\n"
	top, err := parseTop([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := editText([]byte(content), top, public); ok && verifyEdit(top, out, public) == nil {
		t.Fatalf("the line edit should not verify here:\n%s", out)
	}
	p := writeConfig(t, content, 0o600)
	_, after := mustSet(t, p)
	if !strings.Contains(after, "# owner's note") || !strings.Contains(after, setLine+"\n") || strings.Contains(after, "nas.local") {
		t.Fatalf("got:\n%s", after)
	}
}

func TestSetExternalHostIdempotent(t *testing.T) {
	p := writeConfig(t, sampleConfig, 0o600)
	mustSet(t, p)
	first := readFile(t, p)
	bak, err := SetExternalHost(p, public)
	if err != nil || bak != "" {
		t.Fatalf("second call: backup %q, %v; want none", bak, err)
	}
	if readFile(t, p) != first || readFile(t, p+".bak") != sampleConfig {
		t.Fatal("second call changed the config or its backup")
	}
}

func TestSetExternalHostRefusesMalformed(t *testing.T) {
	for name, content := range map[string]string{
		"malformed":     "stash:\n  - path: /data/\n   excludevideo: [false\nport: 9999\n",
		"duplicate key": sampleConfig + "port: 9998\n",
		"list":          "- stash\n- port\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := writeConfig(t, content, 0o600)
			const oldBak = "an older backup\n"
			if err := os.WriteFile(p+".bak", []byte(oldBak), 0o600); err != nil {
				t.Fatal(err)
			}
			past := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
			bak, err := SetExternalHost(p, public)
			if err == nil || bak != "" {
				t.Fatalf("got backup %q, err %v; want an error", bak, err)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
			if readFile(t, p) != content || readFile(t, p+".bak") != oldBak {
				t.Fatal("config or backup changed")
			}
			if fi, err := os.Stat(p); err != nil || !fi.ModTime().Equal(past) {
				t.Fatalf("config was rewritten: %v %v", fi.ModTime(), err)
			}
			if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 2 {
				t.Fatalf("directory holds %d files, want 2", len(entries))
			}
		})
	}
}

func TestSetExternalHostRefusesBadURL(t *testing.T) {
	p := writeConfig(t, sampleConfig, 0o600)
	for _, u := range []string{"stash.example.com", "https://home.example.com/stash", ""} {
		if _, err := SetExternalHost(p, u); err == nil {
			t.Errorf("SetExternalHost(%q) succeeded", u)
		}
	}
	if readFile(t, p) != sampleConfig {
		t.Fatal("config changed")
	}
	if _, err := os.Stat(p + ".bak"); !os.IsNotExist(err) {
		t.Fatalf("backup written: %v", err)
	}
}

func TestSetExternalHostErrors(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{filepath.Join(dir, "missing.yml"), dir} {
		if _, err := SetExternalHost(p, public); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("SetExternalHost(%s): %v", p, err)
		}
	}
}

func TestSetExternalHostFollowsSymlink(t *testing.T) {
	target := writeConfig(t, sampleConfig, 0o600)
	link := filepath.Join(t.TempDir(), "config.yml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	bak, err := SetExternalHost(link, public)
	if err != nil {
		t.Fatal(err)
	}
	if bak != target+".bak" {
		t.Fatalf("backup %q, want next to the target", bak)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced by a file")
	}
	if readFile(t, target) != sampleConfig+setLine+"\n" {
		t.Fatal("target not edited")
	}
}

// FuzzEditConfig checks that an edit either fails or yields a config whose
// external_host is the URL and whose other settings are untouched.
func FuzzEditConfig(f *testing.F) {
	for _, s := range []string{
		sampleConfig,
		"external_host: http://nas.local:9999 # c\nport: 9999\n",
		"external_host: |\n  http://x\n",
		"{port: 9999, external_host: x}",
		"port: 9999\n...\n",
		"a: &x http://y\nexternal_host: *x\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := parseTop(data)
		out, editErr := editConfig(data, public)
		if err != nil {
			if editErr == nil {
				t.Fatalf("edited a config that does not parse: %v", err)
			}
			return
		}
		if editErr != nil {
			return
		}
		if err := verifyEdit(top, out, public); err != nil {
			t.Fatalf("edit does not verify: %v\n%q\n%q", err, data, out)
		}
	})
}

// If Stash rewrites config.yml during the edit, the edit is called off.
func TestWriteAtomicCalledOff(t *testing.T) {
	p := writeConfig(t, sampleConfig, 0o600)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	changed := func() error { return os.ErrExist }
	if err := writeAtomic(p, []byte("port: 1\n"), fi, changed); err == nil {
		t.Fatal("no error")
	}
	if readFile(t, p) != sampleConfig {
		t.Fatal("config replaced")
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Fatalf("temporary file left behind: %d entries", len(entries))
	}
}
