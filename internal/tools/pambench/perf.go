package main

import (
	"fmt"
	"strings"
)

// The targets of issue 8: pamtester through otpgate against
// google-authenticator-libpam, medians.
const (
	daemonTarget = 1.15
	execTarget   = 1.6
)

// modeFigures are the medians of one mode with one kind of code, in ms,
// and their ratios to google-authenticator-libpam.
type modeFigures struct {
	wall, cpu           float64
	daemonCPU, schedCPU float64 // daemon mode: the daemon's CPU per authentication (stat, schedstat)
	wallX, cpuX         float64
}

// figures of a target in the comparison: for daemon mode, CPU is
// pamtester's median plus the daemon's CPU time per authentication.
func figures(cmp *comparison, t *target, right bool) (modeFigures, modeFigures) {
	gaS, otp, k := cmp.ga, cmp.otp, 0
	if right {
		gaS, otp, k = cmp.gaOK, cmp.otpOK, 1
	}
	ga := summarize(gaS)
	s := summarize(otp[t])
	f := modeFigures{wall: s.median, cpu: s.cpuMedian}
	if dc := cmp.daemonCPU[t]; dc != nil {
		stat, sched := dc[k].perAuth()
		f.daemonCPU, f.schedCPU = ms(stat), ms(sched)
		f.cpu += f.daemonCPU
	}
	f.wallX, f.cpuX = f.wall/ga.median, f.cpu/ga.cpuMedian
	return f, modeFigures{wall: ga.median, cpu: ga.cpuMedian, wallX: 1, cpuX: 1}
}

func met(x, target float64) string {
	if x <= target {
		return "met"
	}
	return "NOT met"
}

func printModes(cmp *comparison, exec, dm *target, n int) {
	fmt.Printf("\nexec mode against daemon mode, the same build, pamtester, n=%d each, medians (daemon mode: CPU = pamtester's + the daemon's per authentication)\n", n)
	for _, right := range []bool{false, true} {
		what := "wrong code for root"
		if right {
			what = "right code, a new user each round"
		}
		e, ga := figures(cmp, exec, right)
		d, _ := figures(cmp, dm, right)
		fmt.Printf("  %s\n", what)
		fmt.Printf("    %-30s wall %8.2f ms  cpu %8.2f ms\n", "google-authenticator-libpam", ga.wall, ga.cpu)
		fmt.Printf("    %-30s wall %8.2f ms  cpu %8.2f ms  ratio: wall %.2fx cpu %.2fx  (target <= %.2fx: wall %s, cpu %s)\n",
			"otpgate mode=exec", e.wall, e.cpu, e.wallX, e.cpuX, execTarget, met(e.wallX, execTarget), met(e.cpuX, execTarget))
		fmt.Printf("    %-30s wall %8.2f ms  cpu %8.2f ms  ratio: wall %.2fx cpu %.2fx  (target <= %.2fx: wall %s, cpu %s)\n",
			"otpgate mode=daemon", d.wall, d.cpu, d.wallX, d.cpuX, daemonTarget, met(d.wallX, daemonTarget), met(d.cpuX, daemonTarget))
		fmt.Printf("    %-30s the daemon's CPU per authentication: %.2f ms from /proc/PID/stat (10 ms ticks, summed over %d runs), %.2f ms from schedstat (ns)\n",
			"", d.daemonCPU, cmp.daemonCPU[dm][boolIndex(right)].n, d.schedCPU)
	}
	fl := summarize(cmp.floor)
	fmt.Printf("  floor: pamtester through pam_permit.so alone (pamtester, libpam, nothing asked): wall %.2f ms  cpu %.2f ms\n", fl.median, fl.cpuMedian)
	stat, sched := cmp.daemonWhole.perAuth()
	fmt.Printf("  the daemon's CPU over the whole comparison (warm-up and idle time between its runs included), per authentication it served: %.2f ms (/proc/PID/stat), %.2f ms (schedstat), n=%d\n",
		ms(stat), ms(sched), cmp.daemonWhole.n)
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

func kib(k int64) string { return fmt.Sprintf("%d KiB", k) }

func printLoad(ld *loadResult) {

	fmt.Printf("\nthe daemon under load (internal/tools/daemonload over the socket, wrong codes, failure counts cleared every 90 attempts per user)\n")
	for i := range ld.one {
		for _, r := range []loadRun{ld.one[i], ld.many[i]} {
			fmt.Printf("  round %d, %3d user(s), %2d clients, n=%d: %7.0f auth/s  latency p50 %6.2f p90 %6.2f p99 %7.2f max %7.2f ms  daemon cpu %.2f ms/auth  client cpu %.2f ms/auth\n",
				i+1, r.Users, r.Clients, r.N, r.PerSecond, nsMS(r.P50NS), nsMS(r.P90NS), nsMS(r.P99NS), nsMS(r.MaxNS),
				ms(r.daemonPerAuth()), nsMS(r.ClientCPU)/float64(r.N))
		}
	}
	for _, r := range ld.serial {
		fmt.Printf("  one client at a time, %d users, store on %-5s n=%d: %7.0f auth/s  latency p50 %6.2f p90 %6.2f p99 %7.2f ms  daemon cpu %.2f ms/auth\n",
			r.Users, r.store+",", r.N, r.PerSecond, nsMS(r.P50NS), nsMS(r.P90NS), nsMS(r.P99NS), ms(r.daemonPerAuth()))
	}
	if ld.tmpfsNote != "" {
		fmt.Printf("  (no tmpfs run: %s)\n", ld.tmpfsNote)
	}
	fmt.Printf("  RSS at rest %s (%d fds), CPU at rest %.0f ms over %s\n", kib(ld.rest.rss), ld.rest.fds, ms(ld.idleCPU), ld.restFor)
	prev, prevN := ld.rest, 0
	for i, m := range ld.after {
		fmt.Printf("  RSS after %6d authentications %s (%+d KiB since %d; %d fds), peak %s\n", ld.afterN[i], kib(m.rss), m.rss-prev.rss, prevN, m.fds, kib(m.hwm))
		prev, prevN = m, ld.afterN[i]
	}

}

func nsMS(ns int64) float64 { return float64(ns) / 1e6 }

// performanceMarkdown is the snippet for docs/PERFORMANCE.md.
func performanceMarkdown(env string, cmp *comparison, exec, dm *target, n int, alone aloneResult, ld *loadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `make bench` (internal/tools/pambench) on %s.\n\n", env)
	fmt.Fprintf(&b, "pamtester, %d authentications of each kind through each module, all interleaved in one run. Medians; in daemon mode the CPU time is pamtester's median plus the daemon's CPU time per authentication (utime+stime of /proc/PID/stat read before and after each daemon-mode run, summed, divided by the runs).\n\n", n)
	b.WriteString("| | wrong code: wall | CPU | wall × | CPU × | right code: wall | CPU | wall × | CPU × |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ew, ga := figures(cmp, exec, false)
	er, gaOK := figures(cmp, exec, true)
	dw, _ := figures(cmp, dm, false)
	dr, _ := figures(cmp, dm, true)
	row := func(name string, w, r modeFigures) {
		fmt.Fprintf(&b, "| %s | %.2f ms | %.2f ms | %.2f | %.2f | %.2f ms | %.2f ms | %.2f | %.2f |\n", name,
			w.wall, w.cpu, w.wallX, w.cpuX, r.wall, r.cpu, r.wallX, r.cpuX)
	}
	whole, _ := cmp.daemonWhole.perAuth()
	row("otpgate, daemon mode", dw, dr)
	row("otpgate, exec mode", ew, er)
	row("google-authenticator-libpam", ga, gaOK)
	fl := summarize(cmp.floor)
	row("pam_permit.so alone (the floor: pamtester and libpam, nothing asked)",
		modeFigures{wall: fl.median, cpu: fl.cpuMedian, wallX: fl.median / ga.wall, cpuX: fl.cpuMedian / ga.cpu},
		modeFigures{wall: fl.median, cpu: fl.cpuMedian, wallX: fl.median / gaOK.wall, cpuX: fl.cpuMedian / gaOK.cpu})
	fmt.Fprintf(&b, "\nOf the daemon-mode CPU time, the daemon's share per authentication: wrong code %.2f ms, right code %.2f ms (/proc/PID/stat); %.2f and %.2f ms by schedstat; over the whole comparison, idle time between its runs included, %.2f ms per authentication it served. ", dw.daemonCPU, dr.daemonCPU, dw.schedCPU, dr.schedCPU, ms(whole))
	if alone.err == nil {
		fmt.Fprintf(&b, "The helper alone in exec mode (started as the module starts it, no libpam, no pamtester): %.2f ms wall, %.2f ms CPU, peak RSS %d KiB.\n", ms(alone.wall), ms(alone.cpu), alone.rss)
	} else {
		b.WriteString("\n")
	}
	if ld == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "\n**The daemon under load**: internal/tools/daemonload, %d connections at once over the socket, one wrong code each (failure counts cleared every 90 attempts per user, inside the timed run).\n\n", ld.opts.clients)
	b.WriteString("| run | users | auth/s | latency p50 | p90 | p99 | daemon CPU / auth | client CPU / auth |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for i := range ld.one {
		for _, r := range []loadRun{ld.one[i], ld.many[i]} {
			fmt.Fprintf(&b, "| round %d, %d clients | %d | %.0f | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", i+1, r.Clients, r.Users, r.PerSecond,
				nsMS(r.P50NS), nsMS(r.P90NS), nsMS(r.P99NS), ms(r.daemonPerAuth()), nsMS(r.ClientCPU)/float64(r.N))
		}
	}
	for _, r := range ld.serial {
		fmt.Fprintf(&b, "| one client, store on %s | %d | %.0f | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", r.store, r.Users, r.PerSecond,
			nsMS(r.P50NS), nsMS(r.P90NS), nsMS(r.P99NS), ms(r.daemonPerAuth()), nsMS(r.ClientCPU)/float64(r.N))
	}
	fmt.Fprintf(&b, "\nRSS of a fresh daemon at rest: %s (%d open descriptors; %.0f ms of CPU in %s at rest).", kib(ld.rest.rss), ld.rest.fds, ms(ld.idleCPU), ld.restFor)
	prev, prevN := ld.rest, 0
	for i, m := range ld.after {
		fmt.Fprintf(&b, " After %d authentications: %s (%+d KiB since %d; %d descriptors; peak %s).", ld.afterN[i], kib(m.rss), m.rss-prev.rss, prevN, m.fds, kib(m.hwm))
		prev, prevN = m, ld.afterN[i]
	}
	b.WriteString("\n")
	return b.String()
}
