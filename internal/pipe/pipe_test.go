package pipe

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunkReader returns the sizes given, then EOF, from data.
type chunkReader struct {
	data  []byte
	sizes []int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(r.sizes) > 0 {
		n = min(n, r.sizes[0])
		r.sizes = r.sizes[1:]
	}
	n = copy(p, r.data[:min(n, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}

func TestCopy(t *testing.T) {
	data := make([]byte, 1<<20+123)
	rand.Read(data)
	// Bulk, then a trickle, then bulk again: every byte arrives, in order.
	sizes := []int{1 << 20, 10, 10, 5000, 1 << 16, 3}
	var out bytes.Buffer
	n, err := Copy(&out, &chunkReader{data: data, sizes: sizes})
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("copied %d of %d bytes, err %v, equal %v", n, len(data), err, bytes.Equal(out.Bytes(), data))
	}
	boom := errors.New("boom")
	if _, err := Copy(io.Discard, iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
	if _, err := Copy(shortWriter{}, bytes.NewReader(data)); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("short write: %v", err)
	}
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }
