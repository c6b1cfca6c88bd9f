package yamux

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
)

// Frames of any size read into a recvBuffer come out in order by reads of
// any size, and an emptied buffer holds no chunk. (Burrow)
func TestRecvBufferKeepsOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var b recvBuffer
	var want, got bytes.Buffer
	src := make([]byte, 300<<10)
	rng.Read(src)
	for i := 0; i < 2000; i++ {
		if rng.Intn(2) == 0 {
			n := []int{1, 3, 900, 1 << 10, 5000, 64 << 10, 200 << 10}[rng.Intn(7)]
			off := rng.Intn(len(src) - n)
			if m, err := b.readFrom(bytes.NewReader(src[off:off+n]), n); m != n || err != nil {
				t.Fatalf("readFrom(%d) = %d, %v", n, m, err)
			}
			want.Write(src[off : off+n])
		} else {
			p := make([]byte, rng.Intn(100<<10)+1)
			got.Write(p[:b.Read(p)])
		}
		if b.Len() != want.Len()-got.Len() {
			t.Fatalf("Len() = %d, want %d", b.Len(), want.Len()-got.Len())
		}
	}
	p := make([]byte, 64<<10)
	for b.Len() > 0 {
		got.Write(p[:b.Read(p)])
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("read back differs from what was written")
	}
	if b.chunks != nil {
		t.Errorf("an empty buffer holds %d chunks", len(b.chunks))
	}
}

// A small frame goes into the spare room of the chunk before it instead of
// taking a chunk of its own, and a short read keeps what arrived. (Burrow)
func TestRecvBufferSmallFramesShareChunks(t *testing.T) {
	var b recvBuffer
	for i := 0; i < 100; i++ {
		if _, err := b.readFrom(bytes.NewReader([]byte("GET /")), 5); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.chunks) > 1 {
		t.Errorf("100 frames of 5 bytes took %d chunks, want 1", len(b.chunks))
	}
	n, err := b.readFrom(bytes.NewReader([]byte("abc")), 10)
	if n != 3 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short frame: readFrom = %d, %v; want 3, %v", n, err, io.ErrUnexpectedEOF)
	}
	if b.Len() != 503 {
		t.Errorf("Len() = %d, want 503", b.Len())
	}
	b.release()
	if b.Len() != 0 || b.chunks != nil {
		t.Errorf("after release: Len() = %d, %d chunks", b.Len(), len(b.chunks))
	}
}
