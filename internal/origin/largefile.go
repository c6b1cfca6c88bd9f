package origin

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// largeFileSeed keys the generator; changing it changes every test file, so don't.
const largeFileSeed = 0x6275_7272_6f77_2f31 // "burrow/1"

// LargeFile is a deterministic pseudo-random file of a fixed size that is
// computed on the fly, so a multi-gigabyte file costs no memory. Byte i
// depends only on i, so any range is produced without generating what comes
// before it (http.ServeContent seeks straight to a Range's start), at a few GB/s.
type LargeFile struct {
	size int64
	off  int64
}

var (
	_ io.ReadSeeker = (*LargeFile)(nil)
	_ io.ReaderAt   = (*LargeFile)(nil)
)

// NewLargeFile returns a reader over the size-byte test file, positioned at 0.
func NewLargeFile(size int64) *LargeFile { return &LargeFile{size: max(size, 0)} }

// Size returns the file's length in bytes.
func (f *LargeFile) Size() int64 { return f.size }

// Read reads from the current offset, like os.File.
func (f *LargeFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt reads len(p) bytes at off; it returns io.EOF when it reaches the end.
func (f *LargeFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("origin: negative offset")
	}
	if off >= f.size {
		return 0, io.EOF
	}
	n := len(p)
	if rest := f.size - off; int64(n) > rest {
		n = int(rest)
	}
	fillLarge(p[:n], off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seek sets the offset for the next Read, like os.File; seeking past the end is allowed.
func (f *LargeFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.size
	default:
		return 0, errors.New("origin: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("origin: negative position")
	}
	f.off = offset
	return offset, nil
}

// LargeFileSHA256 returns the SHA-256 of the whole size-byte test file.
func LargeFileSHA256(size int64) [32]byte {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	_, _ = io.CopyBuffer(h, io.LimitReader(NewLargeFile(size), size), buf) // cannot fail
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// The file is a 64 KiB table of pseudo-random words, XORed in each 64 KiB
// block with that block's own pseudo-random key: about as cheap as a copy,
// and no two blocks alike, so a reordered, repeated or shifted range is detected.
const (
	tableWords = 8192 // 64 KiB; a power of two
	tableMask  = tableWords - 1
)

var largeTable = func() *[tableWords]uint64 {
	var t [tableWords]uint64
	for i := range t {
		t[i] = splitmix(1<<63 | uint64(i))
	}
	return &t
}()

// splitmix is splitmix64 in counter mode: the i-th output of a generator seeded with largeFileSeed.
func splitmix(i uint64) uint64 {
	x := largeFileSeed + i*0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// largeWord is the file's 8-byte word at index w (bytes 8w to 8w+7, little-endian).
func largeWord(w uint64) uint64 { return largeTable[w&tableMask] ^ splitmix(w/tableWords) }

// fillLarge writes the file's bytes [off, off+len(p)) into p.
func fillLarge(p []byte, off int64) {
	w := uint64(off) / 8
	var b [8]byte
	if skip := int(uint64(off) % 8); skip != 0 {
		binary.LittleEndian.PutUint64(b[:], largeWord(w))
		n := copy(p, b[skip:])
		p = p[n:]
		w++
	}
	for len(p) >= 8 {
		i := w & tableMask
		n := min(uint64(len(p)/8), tableWords-i)
		key := splitmix(w / tableWords)
		q := p[:n*8]
		for j, v := range largeTable[i : i+n] {
			binary.LittleEndian.PutUint64(q[j*8:], v^key)
		}
		p = p[n*8:]
		w += n
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(b[:], largeWord(w))
		copy(p, b[:])
	}
}

// WriteLargeFile writes the size-byte test file to path, for
// Options.LargeFilePath.
func WriteLargeFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, NewLargeFile(size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
