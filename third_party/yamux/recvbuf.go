package yamux

import (
	"io"
	"sync"
)

// recvBuffer is a stream's unread data (Burrow): a queue of chunks taken from
// shared pools and given back as soon as the reader has taken them.
//
// Upstream kept each stream's data in a bytes.Buffer, which never gives
// memory back while the stream lives: a download whose reader once fell 16
// MiB behind held 16 MiB (and, as bytes.Buffer grows by doubling and its
// ReadFrom grows once more to find the end of each frame, often twice that)
// until it ended, however little it buffered afterwards, and every growth
// left the old array to the collector. Here a stream holds what it buffers,
// rounded up to a chunk, and the chunks of one stream serve the next.
type recvBuffer struct {
	chunks [][]byte // unread data is chunks[0][off:], chunks[1], ...
	off    int
	n      int // unread bytes in all
}

// chunkSizes are the pooled chunk sizes, smallest first. A frame is read into
// the smallest chunk it fits, or into chunks of the largest size; a small
// frame that fits in the last chunk's spare room goes there.
var chunkSizes = [...]int{1 << 10, 8 << 10, 64 << 10}

var chunkPools [len(chunkSizes)]sync.Pool

// getChunk returns an empty chunk with room for n bytes, or the largest if n
// is more.
func getChunk(n int) []byte {
	for i, size := range chunkSizes {
		if n <= size || i == len(chunkSizes)-1 {
			if p, ok := chunkPools[i].Get().(*[]byte); ok {
				return (*p)[:0]
			}
			return make([]byte, 0, size)
		}
	}
	panic("unreachable")
}

// putChunk gives a chunk from getChunk back to its pool.
func putChunk(c []byte) {
	for i, size := range chunkSizes {
		if cap(c) == size {
			c = c[:0]
			chunkPools[i].Put(&c)
			return
		}
	}
}

// minInt is the builtin min, which this package's min(uint32) hides.
func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// Len is the number of unread bytes.
func (b *recvBuffer) Len() int { return b.n }

// readFrom appends exactly n bytes from r, or fewer and the error that
// stopped it.
func (b *recvBuffer) readFrom(r io.Reader, n int) (int, error) {
	read := 0
	for read < n {
		var c []byte
		if last := len(b.chunks) - 1; last >= 0 && cap(b.chunks[last])-len(b.chunks[last]) >= minInt(n-read, chunkSizes[0]) {
			c = b.chunks[last]
		} else {
			c = getChunk(n - read)
			b.chunks = append(b.chunks, c)
		}
		last := len(b.chunks) - 1
		k := minInt(n-read, cap(c)-len(c))
		m, err := io.ReadFull(r, c[len(c):len(c)+k])
		b.chunks[last] = c[:len(c)+m]
		read += m
		b.n += m
		if err != nil {
			if len(b.chunks[last]) == 0 {
				putChunk(b.chunks[last])
				b.chunks = b.chunks[:last]
			}
			return read, err
		}
	}
	return read, nil
}

// Read takes up to len(p) unread bytes, giving back the chunks it empties.
func (b *recvBuffer) Read(p []byte) int {
	read := 0
	for read < len(p) && len(b.chunks) > 0 {
		c := b.chunks[0]
		m := copy(p[read:], c[b.off:])
		read += m
		b.off += m
		if b.off == len(c) {
			putChunk(c)
			b.chunks[0] = nil
			b.chunks = b.chunks[1:]
			b.off = 0
		}
	}
	b.n -= read
	if len(b.chunks) == 0 {
		b.chunks = nil // let the queue's own array go too
	}
	return read
}

// release gives every chunk back; the buffer is empty afterwards.
func (b *recvBuffer) release() {
	for i, c := range b.chunks {
		putChunk(c)
		b.chunks[i] = nil
	}
	*b = recvBuffer{}
}
