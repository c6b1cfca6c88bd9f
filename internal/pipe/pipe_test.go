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

// sizeRecorder fills every read and records the buffer sizes it was offered,
// going quiet (short reads) where told.
type sizeRecorder struct {
	left    int64
	trickle map[int]bool // read numbers answered with 10 bytes
	offered []int
}

func (r *sizeRecorder) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	r.offered = append(r.offered, len(p))
	n := len(p)
	if r.trickle[len(r.offered)] {
		n = 10
	}
	n = int(min(int64(n), r.left))
	r.left -= int64(n)
	return n, nil
}

// A transfer waits with 4 KiB, moves in 64 KiB, then in 256 KiB once it has
// moved 1 MiB, and falls back to 4 KiB when it slows to a trickle.
func TestCopyBufferTiers(t *testing.T) {
	r := &sizeRecorder{left: 8 << 20, trickle: map[int]bool{30: true}}
	if _, err := Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	o := r.offered
	if o[0] != smallBufferSize || o[1] != mediumBufferSize {
		t.Fatalf("first reads offered %v, want 4 KiB then 64 KiB", o[:2])
	}
	// 4 KiB + 16 × 64 KiB ≥ 1 MiB: read 18 is the first large one.
	for i := 1; i < 17; i++ {
		if o[i] != mediumBufferSize {
			t.Fatalf("read %d offered %d bytes, want %d", i+1, o[i], mediumBufferSize)
		}
	}
	if o[17] != LargeBufferSize {
		t.Fatalf("read 18 offered %d bytes, want %d (after 1 MiB moved)", o[17], LargeBufferSize)
	}
	if o[30] != smallBufferSize {
		t.Fatalf("read after a trickle offered %d bytes, want %d", o[30], smallBufferSize)
	}
	// The new run starts counting again: 1 MiB more before a large buffer.
	for i := 31; i < 31+16; i++ {
		if o[i] != mediumBufferSize {
			t.Fatalf("read %d, after the flow resumed, offered %d bytes, want %d", i+1, o[i], mediumBufferSize)
		}
	}
	if o[31+16] != LargeBufferSize {
		t.Fatalf("read %d offered %d bytes, want %d (1 MiB into the new run)", 31+17, o[31+16], LargeBufferSize)
	}
}
