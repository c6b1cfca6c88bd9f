package main

import "testing"

const wrkOutput = `Running 10s test @ http://127.0.0.1:41234/1k.bin
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    3.20ms  81.53ms   89.12%
    Req/Sec     4.95k   512.33     6.01k    71.00%
  Latency Distribution
     50%    4.73ms
     75%    5.90ms
     90%    7.88ms
     99%    1.02s
  98532 requests in 10.01s, 120.65MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   9843.21
Transfer/sec:     12.05MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 9843.21 || r.p50 != 4.73 || r.p99 != 1020 || r.errors != 7 {
		t.Errorf("parseWrk = %+v", r)
	}
	if _, err := parseWrk("wrk: connection refused\n"); err == nil {
		t.Error("parseWrk accepted output without figures")
	}
}

func TestWrkDurationUnits(t *testing.T) {
	for _, c := range []struct {
		num, unit string
		ms        float64
	}{{"612.5", "us", 0.6125}, {"2", "ms", 2}, {"1.5", "s", 1500}, {"1", "m", 60000}} {
		got, err := wrkDuration(c.num, c.unit)
		if err != nil || got != c.ms {
			t.Errorf("wrkDuration(%s%s) = %v, %v; want %v", c.num, c.unit, got, err, c.ms)
		}
	}
}
