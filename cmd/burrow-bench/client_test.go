package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestDownloadRate checks that a paced download reads no faster than its
// rate, as scenario 4's viewers must, and still reads all of it.
func TestDownloadRate(t *testing.T) {
	const size = 2 << 20
	body := bytes.Repeat([]byte{'v'}, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	tg := &target{key: "direct", addr: strings.TrimPrefix(srv.URL, "http://"), host: "files.bench"}
	c := tg.client(1, true)
	defer c.CloseIdleConnections()

	const rate = 8 << 20 // 2 MiB in no less than 250 ms
	start := time.Now()
	n, err := download(t.Context(), c, tg, "/v.bin", fetch{want: size, rate: rate})
	if err != nil || n != size {
		t.Fatalf("download = %d, %v; want %d bytes", n, err, size)
	}
	// Its last read of 256 KiB may end the download without a wait: 7/8 of it is paced.
	if d, least := time.Since(start), 7*time.Second/8*size/rate; d < least {
		t.Errorf("2 MiB at 8 MiB/s took %v, want at least %v", d, least)
	}
}
