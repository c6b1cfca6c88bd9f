package agent

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/protocol"
)

// recStream records its writes in a shared log; a write blocks while its
// gate is closed, as a stream's write waits for the transport.
type recStream struct {
	protocol.Stream
	name string
	log  *writeLog
	gate chan struct{} // nil: writes go through at once
}

type writeLog struct {
	mu     sync.Mutex
	writes []string
	sizes  []int
}

func (l *writeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes...)
}

func (s *recStream) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.log.mu.Lock()
	s.log.writes = append(s.log.writes, s.name)
	s.log.sizes = append(s.log.sizes, len(p))
	s.log.mu.Unlock()
	return len(p), nil
}

func newTestScheduler() *scheduler {
	return newScheduler(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// A bulk stream's next chunk waits while an interactive stream writes.
func TestBulkWaitsForInteractiveWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestScheduler()
		log := &writeLog{}
		gate := make(chan struct{})
		page := s.stream(&recStream{name: "page", log: log, gate: gate})
		video := s.stream(&recStream{name: "video", log: log})
		video.(*schedStream).run = bulkAfter // a video well under way
		video.(*schedStream).last = time.Now()

		go page.Write(make([]byte, 1000))
		synctest.Wait() // the page's write is in progress
		go video.Write(make([]byte, 64<<10))
		synctest.Wait()
		if got := log.get(); len(got) != 0 {
			t.Fatalf("written while the page's write was in progress: %v", got)
		}
		close(gate)
		synctest.Wait()
		if got := log.get(); len(got) < 2 || got[0] != "page" || got[1] != "video" {
			t.Fatalf("writes %v, want the page's first", got)
		}
	})
}

// A stream is interactive for its first bulkAfter bytes of a run: they go
// as written. After that it is bulk, in chunks, and booked on the pacer.
// A pause of runGap makes it interactive again.
func TestStreamTurnsBulkAfterAMegabyte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestScheduler()
		s.setRate(4 << 20) // 4 MiB/s: chunks of minChunk
		log := &writeLog{}
		st := s.stream(&recStream{name: "video", log: log})
		if _, err := st.Write(make([]byte, bulkAfter+4*minChunk)); err != nil {
			t.Fatal(err)
		}
		log.mu.Lock()
		sizes := append([]int(nil), log.sizes...)
		log.mu.Unlock()
		want := []int{bulkAfter, minChunk, minChunk, minChunk, minChunk}
		if len(sizes) != len(want) {
			t.Fatalf("writes of %v bytes, want %v", sizes, want)
		}
		for i := range want {
			if sizes[i] != want[i] {
				t.Fatalf("writes of %v bytes, want %v", sizes, want)
			}
		}
		s.mu.Lock()
		booked := !s.lastBulk.IsZero()
		s.mu.Unlock()
		if !booked {
			t.Fatal("the bulk part was not booked on the pacer")
		}

		time.Sleep(runGap)
		log.mu.Lock()
		log.sizes = nil
		log.mu.Unlock()
		if _, err := st.Write(make([]byte, 3*minChunk)); err != nil {
			t.Fatal(err)
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		if len(log.sizes) != 1 {
			t.Fatalf("after a pause, writes of %v bytes, want one interactive write", log.sizes)
		}
	})
}

// Bulk streams share the pacer's schedule in turns.
func TestBulkStreamsTakeTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestScheduler()
		s.setRate(4 << 20)
		log := &writeLog{}
		var wg sync.WaitGroup
		for _, name := range []string{"a", "b"} {
			st := s.stream(&recStream{name: name, log: log})
			st.(*schedStream).run = bulkAfter
			st.(*schedStream).last = time.Now()
			wg.Go(func() {
				for range 8 {
					_, _ = st.Write(make([]byte, minChunk))
				}
			})
		}
		wg.Wait()
		got := log.get()
		count := map[string]int{}
		for _, w := range got {
			count[w]++
			if d := count["a"] - count["b"]; d > 2 || d < -2 {
				t.Fatalf("writes %v: one stream ran ahead", got)
			}
		}
	})
}

// An interactive write that waits long for its reader (a visitor on a slow
// phone) does not hold bulk streams back.
func TestBulkDoesNotWaitForASlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestScheduler()
		log := &writeLog{}
		gate := make(chan struct{})
		defer close(gate)
		image := s.stream(&recStream{name: "image", log: log, gate: gate})
		video := s.stream(&recStream{name: "video", log: log})
		video.(*schedStream).run = bulkAfter
		go image.Write(make([]byte, 1000))
		synctest.Wait()
		time.Sleep(yieldMax)
		for range 3 {
			video.(*schedStream).last = time.Now()
			if _, err := video.Write(make([]byte, minChunk)); err != nil {
				t.Fatal(err)
			}
		}
		if got := log.get(); len(got) != 3 {
			t.Fatalf("writes %v, want the video's three", got)
		}
	})
}

// Unpaced (no measurement yet, or a transport that reports none), bulk
// writes go through whole.
func TestUnpacedBulkWritesWhole(t *testing.T) {
	s := newTestScheduler()
	log := &writeLog{}
	st := s.stream(&recStream{name: "video", log: log})
	st.(*schedStream).run = bulkAfter
	st.(*schedStream).last = time.Now()
	if _, err := st.Write(make([]byte, maxChunk)); err != nil {
		t.Fatal(err)
	}
	if len(log.sizes) != 1 || log.sizes[0] != maxChunk {
		t.Fatalf("writes of %v bytes, want one of %d", log.sizes, maxChunk)
	}
}
