package origin

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func TestLargeFile(t *testing.T) {
	const size = 200_003
	all, err := io.ReadAll(NewLargeFile(size))
	if err != nil || len(all) != size {
		t.Fatalf("ReadAll = %d bytes, %v", len(all), err)
	}
	if sha256Sum(all) != LargeFileSHA256(size) {
		t.Error("LargeFileSHA256 differs from the bytes read")
	}
	// A longer file starts with the same bytes: byte i depends only on i.
	longer := make([]byte, size)
	if _, err := io.ReadFull(NewLargeFile(size*3), longer); err != nil || !bytes.Equal(longer, all) {
		t.Error("a larger file does not share the prefix")
	}
	if bytes.Count(all, []byte{0}) > size/100 {
		t.Error("too many zero bytes for pseudo-random data")
	}

	// No two 64 KiB blocks alike, even shifted by a word.
	if bytes.Equal(all[:1<<16], all[1<<16:2<<16]) || bytes.Equal(all[8:1<<16], all[1<<16:2<<16-8]) {
		t.Error("64 KiB blocks repeat")
	}

	f := NewLargeFile(size)
	for _, c := range []struct{ off, n int }{{0, 1}, {1, 7}, {3, 8}, {7, 9}, {8, 16}, {199_990, 13}, {12_345, 54_321}, {65_530, 20}} {
		got := make([]byte, c.n)
		n, err := f.ReadAt(got, int64(c.off))
		if err != nil || n != c.n || !bytes.Equal(got, all[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d, %d) = %d, %v, or wrong bytes", c.off, c.n, n, err)
		}
		if pos, err := f.Seek(int64(c.off), io.SeekStart); err != nil || pos != int64(c.off) {
			t.Fatalf("Seek = %d, %v", pos, err)
		}
		got = make([]byte, c.n)
		if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, all[c.off:c.off+c.n]) {
			t.Errorf("Seek+Read at %d, %d: %v or wrong bytes", c.off, c.n, err)
		}
	}

	// The end: a short ReadAt says EOF, Read says EOF only when nothing is left.
	buf := make([]byte, 10)
	if n, err := f.ReadAt(buf, size-4); n != 4 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v", n, err)
	}
	if pos, _ := f.Seek(-4, io.SeekEnd); pos != size-4 {
		t.Errorf("Seek(-4, End) = %d", pos)
	}
	if n, err := f.Read(buf); n != 4 || err != nil {
		t.Errorf("Read at the end = %d, %v", n, err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Errorf("Read past the end = %d, %v", n, err)
	}
	if pos, _ := f.Seek(10, io.SeekCurrent); pos != size+10 {
		t.Errorf("Seek past the end = %d", pos)
	}
	if _, err := f.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to a negative position succeeded")
	}
	if _, err := f.ReadAt(buf, -1); err == nil {
		t.Error("ReadAt a negative offset succeeded")
	}
	if NewLargeFile(-5).Size() != 0 {
		t.Error("negative size")
	}
}

func BenchmarkLargeFileRead(b *testing.B) {
	buf := make([]byte, 256<<10)
	f := NewLargeFile(1 << 62)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		_, _ = f.Read(buf)
	}
}

// A large file on disk (Options.LargeFilePath) is served with the same
// bytes, validators and ranges as the computed one.
func TestLargeFileFromDisk(t *testing.T) {
	const size = 300_007
	path := filepath.Join(t.TempDir(), "large.bin")
	if err := WriteLargeFile(path, size); err != nil {
		t.Fatal(err)
	}
	computed := New(Options{LargeFileSize: size})
	onDisk := New(Options{LargeFileSize: size, LargeFilePath: path})
	for _, rng := range []string{"", "bytes=0-0", "bytes=12345-", "bytes=-17"} {
		var answers [2]*httptest.ResponseRecorder
		for i, h := range []http.Handler{computed, onDisk} {
			r := httptest.NewRequest(http.MethodGet, "/files/large.bin", nil)
			if rng != "" {
				r.Header.Set("Range", rng)
			}
			answers[i] = httptest.NewRecorder()
			h.ServeHTTP(answers[i], r)
		}
		a, b := answers[0], answers[1]
		if a.Code != b.Code || !bytes.Equal(a.Body.Bytes(), b.Body.Bytes()) || a.Header().Get("ETag") != b.Header().Get("ETag") ||
			a.Header().Get("Content-Range") != b.Header().Get("Content-Range") {
			t.Errorf("Range %q: on disk %d (%d bytes, %q), computed %d (%d bytes, %q)", rng,
				b.Code, b.Body.Len(), b.Header().Get("Content-Range"), a.Code, a.Body.Len(), a.Header().Get("Content-Range"))
		}
	}
	if err := WriteLargeFile(filepath.Join(t.TempDir(), "missing", "large.bin"), size); err == nil {
		t.Error("WriteLargeFile into a missing directory succeeded")
	}
}
