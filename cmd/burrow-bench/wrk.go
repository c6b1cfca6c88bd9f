package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what the bench reads from wrk's output.
type wrkResult struct {
	rps       float64
	p50, p99  float64 // ms
	errors    int     // socket errors and non-2xx/3xx answers
	errorText string
}

// runWrk runs `wrk -t2 -c50 -dD --latency` against the small file.
func runWrk(ctx context.Context, t *target, d time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	cmd := exec.CommandContext(ctx, "wrk", "-t2", "-c50", "-d"+secs+"s", "--latency",
		"-H", "Host: "+t.host, t.url(smallFile))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return parseWrk(string(out))
}

var (
	wrkPercentile = regexp.MustCompile(`^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$`)
	wrkSocket     = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads requests/s, the 50th and 99th latency percentiles and the
// error counts from wrk's --latency output.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRPS, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Requests/sec:"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return r, fmt.Errorf("wrk: bad Requests/sec in %q", line)
			}
			r.rps, haveRPS = f, true
		}
		if m := wrkPercentile.FindStringSubmatch(line); m != nil {
			v, err := wrkDuration(m[2], m[3])
			if err != nil {
				return r, err
			}
			if m[1] == "50" {
				r.p50, have50 = v, true
			} else {
				r.p99, have99 = v, true
			}
		}
		if m := wrkSocket.FindStringSubmatch(line); m != nil {
			for _, s := range m[1:] {
				n, _ := strconv.Atoi(s)
				r.errors += n
			}
			r.errorText = strings.TrimSpace(line)
		}
		if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			r.errors += n
			r.errorText = strings.TrimSpace(strings.TrimPrefix(r.errorText+"; "+strings.TrimSpace(line), "; "))
		}
	}
	if !haveRPS || !have50 || !have99 {
		return r, fmt.Errorf("wrk: output not understood:\n%s", out)
	}
	return r, nil
}

// wrkDuration converts wrk's "612.33us" style values to milliseconds.
func wrkDuration(num, unit string) (float64, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("wrk: bad latency %q", num+unit)
	}
	switch unit {
	case "us":
		return v / 1000, nil
	case "ms":
		return v, nil
	case "s":
		return v * 1000, nil
	case "m":
		return v * 60000, nil
	}
	return 0, fmt.Errorf("wrk: unknown unit in %q", num+unit)
}
