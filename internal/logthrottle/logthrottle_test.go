package logthrottle

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/burrow-tunnel/burrow/internal/testutil"
)

func lines(b *testutil.SyncBuffer) []string {
	s := strings.TrimSpace(b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// The first event from a source is written at once; its repeats make one
// line per interval with their count; a source quiet for an interval is
// written at once again.
func TestThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out testutil.SyncBuffer
		th := New(slog.New(slog.NewTextHandler(&out, nil)), time.Minute)
		go th.Run(t.Context())

		for range 500 {
			th.Log(slog.LevelWarn, "192.0.2.1", "agent refused: invalid token", "reason", "typo")
		}
		th.Log(slog.LevelWarn, "192.0.2.2", "agent refused: invalid token", "reason", "typo")
		got := lines(&out)
		if len(got) != 2 || !strings.Contains(got[0], "reason=typo") || !strings.Contains(got[1], "reason=typo") {
			t.Fatalf("lines at once:\n%s\nwant the first event of each source", strings.Join(got, "\n"))
		}

		time.Sleep(time.Minute)
		synctest.Wait()
		got = lines(&out)
		if len(got) != 3 || !strings.Contains(got[2], "from=192.0.2.1 times=499") {
			t.Fatalf("lines after a minute:\n%s\nwant one sum for 192.0.2.1's 499 repeats", strings.Join(got, "\n"))
		}

		time.Sleep(2 * time.Minute)
		th.Log(slog.LevelWarn, "192.0.2.1", "agent refused: invalid token", "reason", "typo")
		if got := lines(&out); len(got) != 4 {
			t.Fatalf("lines after a quiet interval:\n%s\nwant the next event written at once", strings.Join(got, "\n"))
		}
	})
}

// Events from more sources than it tracks are counted together: the lines
// written stay bounded however many addresses a flood comes from.
func TestThrottleManySources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out testutil.SyncBuffer
		th := New(slog.New(slog.NewTextHandler(&out, nil)), time.Minute)
		go th.Run(t.Context())
		for i := range 10_000 {
			th.Log(slog.LevelWarn, fmt.Sprint(i), "agent refused: invalid token")
		}
		if n := len(lines(&out)); n != MaxSources {
			t.Errorf("%d lines at once, want %d", n, MaxSources)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		got := lines(&out)
		if last := got[len(got)-1]; len(got) != MaxSources+1 || !strings.Contains(last, fmt.Sprintf(`from="other sources" times=%d`, 10_000-MaxSources)) {
			t.Errorf("after a minute, %d lines, the last %q; want one sum of the others", len(got), last)
		}
	})
}
