package agent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// stashAnswers plays a Stash over no socket: with a login it answers 401.
type stashAnswers struct {
	login  atomic.Bool
	probes atomic.Int64
}

func (s *stashAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	s.probes.Add(1)
	if r.Body != nil {
		r.Body.Close()
	}
	if s.login.Load() {
		return &http.Response{StatusCode: http.StatusUnauthorized, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Request: r,
		Body: io.NopCloser(strings.NewReader(`{"data":{"version":{"version":"v0.28.0"}}}`))}, nil
}

// A Stash refused for having no login is asked again every loginRecheck,
// so that a login set at home is noticed within 10 s, and noticed once.
func TestLoginNoticedSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stash := &stashAnswers{}
		g := newLoginGuard(Route{Host: "stash.example.com", Service: "http://stash.test:9999"})
		g.client.Transport = stash
		ctx := context.Background()
		if _, err := g.check(ctx); err == nil {
			t.Fatal("a Stash without a login was not refused")
		}
		stash.login.Store(true)
		start := time.Now()
		for {
			if _, err := g.check(ctx); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the login was noticed after %v, want within 10s", d)
		}
		if !g.loginAppeared() {
			t.Error("the login set was not reported")
		}
		if g.loginAppeared() {
			t.Error("the login set was reported twice")
		}
		// A Stash with a login is asked only every guardFresh.
		n := stash.probes.Load()
		time.Sleep(guardFresh / 2)
		if _, err := g.check(ctx); err != nil || stash.probes.Load() != n {
			t.Errorf("probed again within guardFresh (%d probes, err %v)", stash.probes.Load()-n, err)
		}
	})
}
