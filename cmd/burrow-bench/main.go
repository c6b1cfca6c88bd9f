// Command burrow-bench measures Burrow against a direct connection and an
// nginx reverse proxy on the same machine, and over an emulated WAN link, and
// writes the figures to a Markdown report.
//
// It measures and never gates: the exit status is non-zero only when Burrow
// itself failed (a download came back short, a scale test saw errors, a relay
// or agent would not start). Missing tools skip their scenarios with a note.
//
//	go run ./cmd/burrow-bench -out BENCH.md          # full run, ~15 minutes
//	go run ./cmd/burrow-bench -quick -out BENCH.md   # reduced set, < 2 minutes
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin    string
	out    string
	quick  bool
	runs   int
	only   string
	wan    string
	uplink string
	keep   bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/burrow", "the burrow binary to measure (built by `make build`)")
	flag.StringVar(&o.out, "out", "BENCH.md", "Markdown report to write")
	flag.BoolVar(&o.quick, "quick", false, "reduced set for CI: 1 run each, smaller files, one WAN profile (< 2 minutes)")
	flag.IntVar(&o.runs, "runs", 0, "runs per measurement (default 3, or 1 with -quick)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios to run (1-9, e.g. \"1,3,9\"); default all")
	flag.StringVar(&o.wan, "wan", "", "comma-separated WAN profiles for scenario 7 (40ms, 80ms-loss); default both, or 40ms with -quick")
	flag.StringVar(&o.uplink, "uplink", "", "comma-separated paths for scenario 8 (direct, quic, tcp, auto, lossy); default all, or auto with -quick")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs, data files)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o)
	stop()
	os.Exit(code)
}

// run executes the benchmark and returns the process exit code.
func run(ctx context.Context, o options) int {
	p, err := newPlan(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "burrow-bench:", err)
		return 2
	}
	b, err := newBench(o, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "burrow-bench:", err)
		return 2
	}
	defer b.cleanup()

	l0 := readLoad()
	b.runAll(ctx)
	l1 := readLoad()
	b.rep.elapsed = l1.at.Sub(l0.at)
	b.rep.machine.loadAfter = loadAvg()
	b.rep.machine.othersShare = othersShare(l0, l1, b.rep.machine.cpus)

	if err := os.WriteFile(o.out, []byte(b.rep.markdown()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "burrow-bench: write report:", err)
		return 2
	}
	b.logf("report written to %s (%s)", o.out, b.rep.elapsed.Round(time.Second))
	if ctx.Err() != nil {
		b.logf("interrupted: the report is partial")
		return 130
	}
	if len(b.rep.burrowFailures) > 0 {
		fmt.Fprintf(os.Stderr, "burrow-bench: Burrow failed %d time(s):\n  %s\n",
			len(b.rep.burrowFailures), strings.Join(b.rep.burrowFailures, "\n  "))
		return 1
	}
	return 0
}
