package relay_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/burrow-tunnel/burrow/agent"
)

// BenchmarkProxy measures the whole in-process path — client → relay →
// tunnel → agent → origin — for small requests (50 concurrent clients,
// 1 KiB answers) and for one large download, on both transports. Run with
// -cpuprofile to see where relay and agent spend their time.
func BenchmarkProxy(b *testing.B) {
	small := bytes.Repeat([]byte("x"), 1<<10)
	large := bytes.Repeat([]byte("y"), 1<<20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/large") {
			for range 64 {
				w.Write(large)
			}
			return
		}
		w.Write(small)
	})}
	go origin.Serve(ln)
	defer origin.Close()
	for _, tr := range []string{"quic", "tcp"} {
		b.Run(tr, func(b *testing.B) {
			h := startRelay(b, []string{"bench.example.com"})
			startAgent(b, h, tr, []agent.Route{{Host: "bench.example.com", Service: "http://" + ln.Addr().String()}})
			client := &http.Client{Transport: &http.Transport{
				MaxIdleConnsPerHost: 64,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", h.relay.HTTPAddr().String())
				},
			}}
			defer client.CloseIdleConnections()
			get := func(path string) error {
				resp, err := client.Get("http://bench.example.com" + path)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return err
			}
			b.Run("small-c50", func(b *testing.B) {
				var next atomic.Int64
				var wg sync.WaitGroup
				start := time.Now()
				for range 50 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							if err := get("/small"); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			})
			b.Run("large-64MiB", func(b *testing.B) {
				b.SetBytes(64 << 20)
				for range b.N {
					if err := get("/large"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
