package stash

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// SetExternalHost sets external_host to publicURL in the config.yml at path, after saving the original as <path>.bak; backup is "" when the file already said so.
//
// Call it only while Stash is stopped: Stash rewrites config.yml when it
// starts and when settings are saved. Every other byte of the file is kept
// when the edit can be made on one line; a malformed file is left untouched.
func SetExternalHost(path, publicURL string) (backup string, err error) {
	base, err := normalizeBase(publicURL)
	if err != nil {
		return "", err
	}
	// Edit the file a symlink points to rather than replace the link.
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("stash config: %w", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("stash config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("stash config %s is not a regular file", real)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return "", fmt.Errorf("read stash config: %w", err)
	}
	out, err := editConfig(data, base)
	if err != nil {
		return "", fmt.Errorf("stash config %s left unchanged: %w", real, err)
	}
	if bytes.Equal(out, data) {
		return "", nil
	}

	backup = real + ".bak"
	if err := writeAtomic(backup, data, fi, nil); err != nil {
		return "", fmt.Errorf("back up stash config: %w", err)
	}
	unchanged := func() error {
		now, err := os.ReadFile(real)
		if err != nil {
			return err
		}
		if !bytes.Equal(now, data) {
			return errors.New("the file changed while it was being edited (is Stash running?)")
		}
		return nil
	}
	if err := writeAtomic(real, out, fi, unchanged); err != nil {
		return "", fmt.Errorf("write stash config %s: %w", real, err)
	}
	return backup, nil
}

// editConfig returns config.yml data with external_host set to base. It
// edits the text when it can, so comments, indentation and quoting stay as
// the owner or Stash wrote them, and re-encodes the YAML only when the text
// edit would not parse back to the same settings. Either way the result is
// parsed and compared with the original before it is returned.
func editConfig(data []byte, base string) ([]byte, error) {
	top, err := parseTop(data)
	if err != nil {
		return nil, err
	}
	if out, ok := editText(data, top, base); ok && verifyEdit(top, out, base) == nil {
		return out, nil
	}
	out, err := editNodes(data, base)
	if err != nil {
		return nil, err
	}
	if err := verifyEdit(top, out, base); err != nil {
		return nil, fmt.Errorf("edited config fails its check: %w", err)
	}
	return out, nil
}

// editText replaces a top-level "external_host:" line, keeping its trailing
// comment, or appends one at the end. ok is false when the existing key is
// not written on a plain line of its own.
func editText(data []byte, top *yaml.Node, base string) (out []byte, ok bool) {
	eol := []byte("\n")
	if i := bytes.IndexByte(data, '\n'); i > 0 && data[i-1] == '\r' {
		eol = []byte("\r\n")
	}
	entry := []byte(externalHostKey + ": " + scalar(base))

	k, v := lookup(top, externalHostKey)
	if k == nil {
		out = append(out, data...)
		if len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			out = append(out, eol...)
		}
		out = append(out, entry...)
		return append(out, eol...), true
	}

	lines := bytes.SplitAfter(data, []byte("\n"))
	if k.Style != 0 || k.Column != 1 || k.Line < 1 || k.Line > len(lines) {
		return nil, false
	}
	line := lines[k.Line-1]
	body := bytes.TrimRight(line, "\r\n")
	end := line[len(body):]
	if !bytes.HasPrefix(body, []byte(externalHostKey)) {
		return nil, false
	}
	comment := v.LineComment
	if comment == "" {
		comment = k.LineComment
	}
	if comment != "" {
		trimmed := bytes.TrimRight(body, " \t")
		if !bytes.HasSuffix(trimmed, []byte(comment)) {
			return nil, false
		}
		before := trimmed[:len(trimmed)-len(comment)]
		gap := before[len(bytes.TrimRight(before, " \t")):]
		if len(gap) == 0 {
			gap = []byte(" ")
		}
		entry = append(append(entry, gap...), comment...)
	}

	for i, l := range lines {
		if i == k.Line-1 {
			out = append(append(out, entry...), end...)
			continue
		}
		out = append(out, l...)
	}
	return out, true
}

// editNodes sets external_host through the YAML node tree and re-encodes the
// document. Comments survive; indentation and line wrapping may not.
func editNodes(data []byte, base string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed YAML: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isEmpty(doc.Content[0]) {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("top level is %s, not a mapping of settings", kindName(top.Kind))
	}
	value := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: base}
	replaced := false
	for i := 0; i+1 < len(top.Content); i += 2 {
		if k := top.Content[i]; k.Kind == yaml.ScalarNode && k.Value == externalHostKey {
			old := top.Content[i+1]
			value.LineComment, value.HeadComment, value.FootComment = old.LineComment, old.HeadComment, old.FootComment
			top.Content[i+1] = value
			replaced = true
			break
		}
	}
	if !replaced {
		top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: externalHostKey}, value)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// verifyEdit checks that out parses, has external_host == base, and has every
// other top-level key of before, in the same order, with the same value.
func verifyEdit(before *yaml.Node, out []byte, base string) error {
	after, err := parseTop(out)
	if err != nil {
		return err
	}
	if _, v := lookup(after, externalHostKey); v == nil || v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" || v.Value != base {
		return fmt.Errorf("%s does not read back as %q", externalHostKey, base)
	}
	a, b := otherPairs(before), otherPairs(after)
	if len(a) != len(b) {
		return fmt.Errorf("%d other settings before, %d after", len(a)/2, len(b)/2)
	}
	for i := 0; i < len(a); i += 2 {
		if !sameNode(a[i], b[i]) || !sameNode(a[i+1], b[i+1]) {
			return fmt.Errorf("setting %q changed", a[i].Value)
		}
	}
	return nil
}

// otherPairs returns the key and value nodes of m other than external_host.
func otherPairs(m *yaml.Node) []*yaml.Node {
	if m == nil {
		return nil
	}
	var pairs []*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind != yaml.ScalarNode || k.Value != externalHostKey {
			pairs = append(pairs, k, m.Content[i+1])
		}
	}
	return pairs
}

// sameNode compares two YAML trees by kind, tag, value and anchors, ignoring
// positions, styles and comments.
func sameNode(a, b *yaml.Node) bool {
	if a.Kind != b.Kind || a.ShortTag() != b.ShortTag() || a.Value != b.Value ||
		a.Anchor != b.Anchor || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !sameNode(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// scalar writes s as a plain YAML scalar when it reads back as the same
// string, and double-quoted otherwise.
func scalar(s string) string {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+s), &n); err == nil && len(n.Content) == 1 {
		if m := n.Content[0]; m.Kind == yaml.MappingNode && len(m.Content) == 2 {
			if v := m.Content[1]; v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == s && v.LineComment == "" {
				return s
			}
		}
	}
	return strconv.Quote(s) // a validated URL is printable ASCII, where Go and YAML quoting agree
}

// writeAtomic replaces path with data through a temporary file in the same
// directory, with the mode and owner of fi, synced before the rename. check,
// if set, runs just before the rename and can still call it off.
func writeAtomic(path string, data []byte, fi fs.FileInfo, check func() error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// Stash must still be able to rewrite its config when it starts, even
	// if the agent runs as root and Stash does not.
	if err = chownLike(f, fi); err != nil {
		return fmt.Errorf("keep the owner of %s: %w", path, err)
	}
	if err = f.Chmod(fi.Mode().Perm()); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if check != nil {
		if err = check(); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable; failure is harmless, as not every
// platform or file system can sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
