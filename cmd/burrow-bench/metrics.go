package main

import "fmt"

// metric is one row of the loopback table.
type metric struct {
	id       string
	scenario int
	label    string
	unit     string
	prec     int  // decimals shown
	integer  bool // a count: shown without decimals, no ratio
}

// Metric ids.
const (
	mS1MBps     = "s1.mbps"
	mS1CPU      = "s1.cpu"
	mS1Switch   = "s1.switch"
	mS2MBps     = "s2.mbps"
	mS2CPU      = "s2.cpu"
	mS3RPS      = "s3.rps"
	mS3P50      = "s3.p50"
	mS3P99      = "s3.p99"
	mS3Err      = "s3.err"
	mS4Idle50   = "s4.idle50"
	mS4Idle99   = "s4.idle99"
	mS4Load50   = "s4.load50"
	mS4Load99   = "s4.load99"
	mS4Bulk     = "s4.bulk"
	mS4View50   = "s4.view50"
	mS4View99   = "s4.view99"
	mS5Fresh    = "s5.fresh"
	mS5Range    = "s5.range"
	mS5Bounded  = "s5.bounded"
	mS6StrErr   = "s6.streams.err"
	mS6StrMBps  = "s6.streams.mbps"
	mS6StrTime  = "s6.streams.time"
	mS6StrRSS   = "s6.streams.rss"
	mS6StrRelay = "s6.streams.relay"
	mS6StrAgent = "s6.streams.agent"
	mS6WSErr    = "s6.ws.err"
	mS6WSRSS    = "s6.ws.rss"
	mS6WSOpen   = "s6.ws.open"
	mS6WSRelay  = "s6.ws.relay"
	mS6WSAgent  = "s6.ws.agent"
)

// metricsFor lists the table's rows in order; labels carry the plan's sizes.
func metricsFor(p plan) []metric {
	big := sizeName(p.bigSize)
	return []metric{
		{id: mS1MBps, scenario: 1, label: "one " + big + " download", unit: "MB/s", prec: 0},
		{id: mS1CPU, scenario: 1, label: "CPU per GiB moved (nginx proxy / relay+agent)", unit: "s", prec: 2},
		{id: mS1Switch, scenario: 1, label: "context switches per GiB moved, thousands (nginx proxy / relay+agent)", unit: "k", prec: 0},
		{id: mS2MBps, scenario: 2, label: fmt.Sprintf("%d × %s, aggregate", p.parallel, big), unit: "MB/s", prec: 0},
		{id: mS2CPU, scenario: 2, label: "CPU per GiB moved (nginx proxy / relay+agent)", unit: "s", prec: 2},
		{id: mS3RPS, scenario: 3, label: fmt.Sprintf("1 KiB, wrk -t2 -c50 -d%s: requests/s", p.wrkDuration), unit: "req/s", prec: 0},
		{id: mS3P50, scenario: 3, label: "latency p50", unit: "ms", prec: 2},
		{id: mS3P99, scenario: 3, label: "latency p99", unit: "ms", prec: 2},
		{id: mS3Err, scenario: 3, label: "errors (socket errors + non-2xx)", unit: "", integer: true},
		{id: mS4Idle50, scenario: 4, label: fmt.Sprintf("%d sequential 1 KiB, idle: p50", p.interactiveN), unit: "ms", prec: 3},
		{id: mS4Idle99, scenario: 4, label: "idle: p99", unit: "ms", prec: 3},
		{id: mS4Load50, scenario: 4, label: fmt.Sprintf("during %d × %s downloads: p50", p.parallel, big), unit: "ms", prec: 3},
		{id: mS4Load99, scenario: 4, label: "during downloads: p99", unit: "ms", prec: 3},
		{id: mS4Bulk, scenario: 4, label: "the downloads' aggregate meanwhile", unit: "MB/s", prec: 0},
		{id: mS4View50, scenario: 4, label: fmt.Sprintf("while %d viewers each read a video at %d MB/s: p50", p.parallel, viewerRate/1_000_000), unit: "ms", prec: 3},
		{id: mS4View99, scenario: 4, label: "while viewers read: p99", unit: "ms", prec: 3},
		{id: mS5Fresh, scenario: 5, label: fmt.Sprintf("fresh connection, GET 1 KiB (%d per run)", p.ttfbSamples), unit: "ms", prec: 3},
		{id: mS5Bounded, scenario: 5, label: "fresh connection, 64 KiB Range at a random offset of " + big, unit: "ms", prec: 3},
		{id: mS5Range, scenario: 5, label: "fresh connection, open Range (bytes=N-) at a random offset, abandoned after the first byte (a seek)", unit: "ms", prec: 3},
		{id: mS6StrErr, scenario: 6, label: fmt.Sprintf("%d concurrent 1 MiB downloads: errors", p.streams), unit: "", integer: true},
		{id: mS6StrTime, scenario: 6, label: "all done in", unit: "s", prec: 2},
		{id: mS6StrMBps, scenario: 6, label: "aggregate", unit: "MB/s", prec: 0},
		{id: mS6StrRSS, scenario: 6, label: "peak RSS growth (nginx proxy / relay+agent)", unit: "MiB", prec: 1},
		{id: mS6StrRelay, scenario: 6, label: "peak of the relay alone", unit: "MiB", prec: 1},
		{id: mS6StrAgent, scenario: 6, label: "peak of the agent alone", unit: "MiB", prec: 1},
		{id: mS6WSOpen, scenario: 6, label: fmt.Sprintf("%d idle websockets: opened in", p.websockets), unit: "s", prec: 2},
		{id: mS6WSErr, scenario: 6, label: "errors (open + echo after holding)", unit: "", integer: true},
		{id: mS6WSRSS, scenario: 6, label: "RSS per websocket (nginx proxy / relay+agent)", unit: "KiB", prec: 1},
		{id: mS6WSRelay, scenario: 6, label: "of which the relay", unit: "KiB", prec: 1},
		{id: mS6WSAgent, scenario: 6, label: "of which the agent", unit: "KiB", prec: 1},
	}
}

// sizeName is "1 GiB", "256 MiB", "1 KiB".
func sizeName(n int64) string {
	switch {
	case n >= gib && n%gib == 0:
		return fmt.Sprintf("%d GiB", n/gib)
	case n >= mib && n%mib == 0:
		return fmt.Sprintf("%d MiB", n/mib)
	case n >= kib && n%kib == 0:
		return fmt.Sprintf("%d KiB", n/kib)
	}
	return fmt.Sprintf("%d B", n)
}
