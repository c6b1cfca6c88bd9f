package main

import (
	"fmt"
	"math"
	"strings"
)

// relaysTargets are scenario 10's rows of the Targets table: figures, with
// no threshold to meet.
func (r *report) relaysTargets() []targetRow {
	var rows []targetRow
	setups := r.plan.relaysSetups()
	most := setups[len(setups)-1].sessions()
	for _, key := range []string{"quic", "tcp"} {
		one, two := r.median(mS10MBps(relaySetup{1, 1}), key), r.median(mS10MBps(relaySetup{2, 1}), key)
		row := targetRow{
			name: fmt.Sprintf("two relays, %s: %d × %s spread over both, aggregate (one relay beside it)",
				transportName(key), r.plan.parallel, sizeName(r.plan.bigSize)),
			value: "not measured", status: "figure",
		}
		if !math.IsNaN(two) {
			row.value = fmt.Sprintf("%.0f MB/s", two)
			var beside []string
			if !math.IsNaN(one) {
				beside = append(beside, fmt.Sprintf("one relay %.0f MB/s, %.2f×", one, two/one))
			}
			if v := r.median(mS10MBps(relaySetup{1, 2}), key); !math.IsNaN(v) {
				beside = append(beside, fmt.Sprintf("one relay with two sessions %.0f MB/s", v))
			}
			if len(beside) > 0 {
				row.value += " (" + strings.Join(beside, "; ") + ")"
			}
		}
		rows = append(rows, row)
		row = targetRow{
			name:  fmt.Sprintf("two relays, %s: agent memory per idle session, 1 → %d sessions", transportName(key), most),
			value: "not measured", status: "figure",
		}
		if v := r.median(mS10PerSess(most), key); !math.IsNaN(v) {
			row.value = fmt.Sprintf("%.0f KiB", v)
		}
		rows = append(rows, row)
	}
	return rows
}

func (r *report) writeRelays(w *strings.Builder) {
	fmt.Fprintf(w, "## Two relays\n\n")
	if !r.plan.scenarios[10] {
		fmt.Fprintf(w, "Not run.\n\n")
		return
	}
	p := r.plan
	fmt.Fprintf(w, "Scenario 10. Two relays on this host's loopback, each its own process with its own tunnel and public port, "+
		"the same `agents[]` grant and one pinned tunnel identity (relay B loads relay A's `tunnel.crt` and `tunnel.key` through "+
		"`tunnel.cert_file`/`tunnel.key_file`, so one `relay_fingerprint` fits both), and one agent with `relay: [A, B]`. "+
		"**Downloads**: %d × %s at once, each on its own connection, all through relay A with an agent dialing only A, then "+
		"%d through each relay's public port with an agent keeping one session to each, then all through relay A again with an agent "+
		"keeping two sessions to it (`connections_per_relay: 2`; the relay sends each request to the session with the fewest streams), "+
		"which tells what a second relay brings from what a second session does; CPU is that of both relays and the agent. "+
		"**Memory**: a fresh agent per setup (1 relay × 1 connection, then 2 relays × `connections_per_relay` %s), read (VmRSS) "+
		"once its log shows every session connected and it has been idle for %s; per session is "+
		"(RSS(k sessions) − RSS(1 session)) / (k − 1), per run, then the median.\n\n",
		p.parallel, sizeName(p.bigSize), p.parallel/2, joinInts(p.relaysConns, ", "), p.relaysSettle)
	fmt.Fprintf(w, "On one machine both relays, the agent, the origin and the client share the same %d CPUs, and the downloads "+
		"are bound by CPU, not by a link: the aggregate through two relays shows whether spreading the downloads costs anything, "+
		"not the doubling that two relays on two servers, each with its own CPU and uplink, can give.\n\n", r.machine.cpus)

	one, two, oneTwo := relaySetup{1, 1}, relaySetup{2, 1}, relaySetup{1, 2}
	fmt.Fprintf(w, "| path | one relay: %d × %s, MB/s | two relays: %d through each, MB/s | two ÷ one | one relay, two sessions, MB/s "+
		"| CPU per GiB, relays + agent, s: one relay / two relays / one relay, two sessions |\n",
		p.parallel, sizeName(p.bigSize), p.parallel/2)
	fmt.Fprintf(w, "| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, key := range []string{"quic", "tcp"} {
		ratio := "—"
		if v := r.median(mS10MBps(two), key) / r.median(mS10MBps(one), key); !math.IsNaN(v) && !math.IsInf(v, 0) {
			ratio = fmt.Sprintf("%.2f×", v)
		}
		fmt.Fprintf(w, "| Burrow %s | %s | %s | %s | %s | %s / %s / %s |\n", transportName(key),
			r.fmtCell(mS10MBps(one), key, 0), r.fmtCell(mS10MBps(two), key, 0), ratio, r.fmtCell(mS10MBps(oneTwo), key, 0),
			r.fmtCell(mS10CPU(one), key, 2), r.fmtCell(mS10CPU(two), key, 2), r.fmtCell(mS10CPU(oneTwo), key, 2))
	}
	fmt.Fprintf(w, "\n| path | relays × connections_per_relay | sessions | agent RSS, MiB | per session beyond the first, KiB |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | ---: | ---: |\n")
	for _, key := range []string{"quic", "tcp"} {
		for _, s := range p.relaysSetups() {
			per := "—"
			if s.sessions() > 1 {
				per = r.fmtCell(mS10PerSess(s.sessions()), key, 0)
			}
			fmt.Fprintf(w, "| Burrow %s | %d × %d | %d | %s | %s |\n", transportName(key), s.relays, s.conns, s.sessions(),
				r.fmtCell(mS10RSS(s.sessions()), key, 1), per)
		}
	}
	fmt.Fprintf(w, "\n")
}

// fmtCell is the median (min–max) of a cell with prec decimals, or "—".
func (r *report) fmtCell(id, key string, prec int) string {
	if c := r.cells[id][key]; c != nil {
		return fmtSample(c.s, 1, prec, "")
	}
	return "—"
}

func joinInts(xs []int, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, sep)
}
