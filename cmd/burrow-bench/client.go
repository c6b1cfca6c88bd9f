package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// readSize is the client's read size for large bodies.
const readSize = 256 * kib

// target is one path from the client to the origin: direct, through the
// nginx proxy, or through a Burrow relay and agent.
type target struct {
	key    string // column key: direct, nginx, quic, tcp, …
	name   string // column title
	addr   string // host:port of the public side
	host   string // Host header of file requests
	burrow bool   // a failure here is Burrow's failure
	// dial makes the client's connections (inside a namespace for the WAN);
	// nil dials from the host.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// pids are the processes whose CPU and memory the path costs: the nginx
	// proxy, or the relay and the agent. None for direct.
	pids func() []int
	// alive reports a process of the path that died.
	alive func() error
	// restart gives the path fresh processes; nil when it has none.
	restart func() error
	// logs returns what the path's processes logged about trouble since
	// the last call; may be nil.
	logs func() string
	// admin is the address of the relay's admin listener, "" when unknown;
	// nil for paths without a relay.
	admin func() string
}

func (t *target) url(path string) string { return "http://" + t.addr + path }

func (t *target) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if t.dial != nil {
		return t.dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// client is an HTTP/1.1 client for the target; keepAlive false gives every
// request its own TCP connection.
func (t *target) client(conns int, keepAlive bool) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         t.dialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
		ReadBufferSize:      64 * kib,
	}}
}

func (t *target) procs() []int {
	if t.pids == nil {
		return nil
	}
	return t.pids()
}

func (t *target) check() error {
	if t.alive == nil {
		return nil
	}
	return t.alive()
}

func (t *target) request(ctx context.Context, path string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, t.url(path), nil)
	req.Host = t.host
	return req
}

// errCapped marks a download stopped by its time cap; the bytes so far count.
var errCapped = errors.New("stopped at the time cap")

// fetch says how to download.
type fetch struct {
	want     int64         // the expected length; 0 takes any
	limit    time.Duration // stop after this long with errCapped; 0 never
	progress *atomic.Int64 // counts bytes as they arrive; may be nil
	rate     int64         // read no faster than this many bytes/s, as a video player does; 0 as fast as it comes
}

// download fetches path and discards the body in readSize reads.
func download(ctx context.Context, c *http.Client, t *target, path string, f fetch) (int64, error) {
	dctx := ctx
	if f.limit > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, f.limit)
		defer cancel()
	}
	resp, err := c.Do(t.request(dctx, path))
	if err != nil {
		return 0, capped(ctx, dctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	buf := make([]byte, readSize)
	var n int64
	start := time.Now()
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if f.progress != nil {
			f.progress.Add(int64(m))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, capped(ctx, dctx, err)
		}
		if f.rate > 0 {
			due := time.Duration(float64(n) / float64(f.rate) * float64(time.Second))
			if wait := due - time.Since(start); wait > 0 {
				select {
				case <-time.After(wait):
				case <-dctx.Done():
					return n, capped(ctx, dctx, dctx.Err())
				}
			}
		}
	}
	if f.want > 0 && n != f.want {
		return n, fmt.Errorf("GET %s: %d of %d bytes", path, n, f.want)
	}
	return n, nil
}

// capped turns the end of a download's own time limit into errCapped.
func capped(parent, own context.Context, err error) error {
	if parent.Err() == nil && errors.Is(own.Err(), context.DeadlineExceeded) {
		return errCapped
	}
	return err
}

// getSmall fetches the 1 KiB file and returns how long it took.
func getSmall(ctx context.Context, c *http.Client, t *target) (time.Duration, error) {
	start := time.Now()
	resp, err := c.Do(t.request(ctx, smallFile))
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	switch {
	case err != nil:
		return 0, err
	case resp.StatusCode != http.StatusOK:
		return 0, fmt.Errorf("GET %s: %s", smallFile, resp.Status)
	case n != kib:
		return 0, fmt.Errorf("GET %s: %d bytes", smallFile, n)
	}
	return d, nil
}

// openRange is an open-ended Range header value ("bytes=from-"), what a
// video player sends on a seek.
func openRange(from int64) string { return fmt.Sprintf("bytes=%d-", from) }

// ttfb opens a new TCP connection to the public side, sends a GET (with a
// Range header when rng is set) and returns the time from the dial to the
// first byte of the answer. The status is checked after the clock stops;
// the rest of the answer is abandoned, as a player abandons a seek.
func ttfb(ctx context.Context, t *target, path, rng string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	conn, err := t.dialContext(ctx, "tcp", t.addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + t.host + "\r\n"
	want := "200"
	if rng != "" {
		req += "Range: " + rng + "\r\n"
		want = "206"
	}
	req += "Connection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadByte(); err != nil {
		return 0, err
	}
	d := time.Since(start)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if f := strings.Fields(line); len(f) < 2 || f[1] != want {
		return 0, fmt.Errorf("GET %s: status line %q, want %s", path, "H"+strings.TrimSpace(line), want)
	}
	return d, nil
}

// waitReady polls the small file until it answers (the agent is connected).
func waitReady(ctx context.Context, t *target, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c := t.client(1, false)
	var last error
	for {
		if err := t.check(); err != nil {
			return err
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := getSmall(rctx, c, t)
		rcancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v", t.name, limit, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
