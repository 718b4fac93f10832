package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Resamples of the bootstrap, and its confidence level.
const (
	resamples  = 2000
	confidence = 0.95
)

// aloneResult is a helper run alone, without libpam or pamtester.
type aloneResult struct {
	wall, cpu time.Duration
	rss       int64 // KiB, the peak
	err       error
}

// environment describes the machine for the report.
func environment(dir, commit string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%s, %s, %d CPUs, Linux %s, store on %s, %s",
		time.Now().Format("2006-01-02"), cpu, runtime.NumCPU(), strings.TrimSpace(string(kernel)), fsType(dir), commit)
}

// fsType names the file system under path (fsync costs differ a lot).
func fsType(path string) string {
	var s syscall.Statfs_t
	if syscall.Statfs(path, &s) != nil {
		return "an unknown file system"
	}
	switch uint32(s.Type) {
	case 0xef53:
		return "ext4"
	case 0x01021994:
		return "tmpfs"
	case 0x58465342:
		return "xfs"
	case 0x9123683e:
		return "btrfs"
	case 0x794c7630:
		return "overlayfs"
	case 0x2fc12fc1:
		return "zfs"
	}
	return fmt.Sprintf("file system 0x%x", uint32(s.Type))
}

func msd(d time.Duration) string { return fmt.Sprintf("%.2f ms", ms(d)) }

func printComparison(cmp *comparison, targets []*target, n int, baseNote string, alone map[*target]aloneResult) {
	for _, right := range []bool{false, true} {
		gaS, otp, what := cmp.ga, cmp.otp, "wrong code for root"
		if right {
			gaS, otp, what = cmp.gaOK, cmp.otpOK, "right code, a new user each round"
		}
		ga := summarize(gaS)
		fmt.Printf("pamtester authenticate, %s, n=%d each, interleaved, medians\n", what, n)
		fmt.Printf("  %-34s wall %9.2f ms  cpu %9.2f ms\n", "google-authenticator-libpam", ga.median, ga.cpuMedian)
		for i := len(targets) - 1; i >= 0; i-- {
			t := targets[i]
			s := summarize(otp[t])
			fmt.Printf("  %-34s wall %9.2f ms  cpu %9.2f ms  ratio to anchor: wall %.2fx cpu %.2fx\n",
				"otpgate "+t.name, s.median, s.cpuMedian, s.median/ga.median, s.cpuMedian/ga.cpuMedian)
		}
		if len(targets) > 1 {
			fmt.Printf("  %s\n", nowVsBaseline(otp[targets[0]], otp[targets[1]]))
		}
	}
	if baseNote != "" {
		fmt.Printf("  (%s)\n", baseNote)
	}
	for i := len(targets) - 1; i >= 0; i-- {
		t := targets[i]
		if a := alone[t]; a.err != nil {
			fmt.Printf("  otpgate-helper alone, %s: not measured: %v\n", t.name, a.err)
		} else {
			fmt.Printf("  %-34s wall %9.2f ms  cpu %9.2f ms  peak RSS %d KiB\n", "helper alone, "+t.name, ms(a.wall), ms(a.cpu), a.rss)
		}
	}
}

// nowVsBaseline is the difference of the wall and CPU medians of the
// working tree and the baseline, with bootstrap intervals: the machine's
// noise, in the same units.
func nowVsBaseline(now, base []sample) string {
	wn, wb := summarize(now), summarize(base)
	wlo, whi := bootstrapMedianDiff(wb.wall, wn.wall, resamples, confidence)
	cn, cb := cpuOf(now), cpuOf(base)
	clo, chi := bootstrapMedianDiff(cb, cn, resamples, confidence)
	return fmt.Sprintf("now minus baseline, medians: wall %+.2f ms [%+.2f, %+.2f], CPU %+.2f ms [%+.2f, %+.2f] (%.0f %% bootstrap intervals)",
		wn.median-wb.median, wlo, whi, percentile(cn, 50)-percentile(cb, 50), clo, chi, confidence*100)
}

func cpuOf(s []sample) []float64 {
	c := make([]float64, len(s))
	for i, x := range s {
		c[i] = ms(x.cpu)
	}
	slices.Sort(c)
	return c
}

// unknownVsNotEnrolled compares the two: the difference of the medians
// (unknown minus not enrolled), its bootstrap interval, the Mann-Whitney
// p-value and AUC, and whether the two can be told apart at the 95 %
// level by either test.
type unknownVsNotEnrolled struct {
	diff, lo, hi, p, auc float64
	distinguishable      bool
}

func compareUnknown(tm *timingResult) unknownVsNotEnrolled {
	u, ne := summarize(tm.samples[kindUnknown]), summarize(tm.samples[kindNotEnrolled])
	var c unknownVsNotEnrolled
	c.diff = u.median - ne.median
	c.lo, c.hi = bootstrapMedianDiff(ne.wall, u.wall, resamples, confidence)
	c.p, c.auc = mannWhitney(u.wall, ne.wall)
	c.distinguishable = c.p < 1-confidence || c.lo > 0 || c.hi < 0
	return c
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printTiming(tm *timingResult) {
	fmt.Printf("\ntiming through pamtester, %d samples of each answer, shuffled every round, wall time\n", tm.n)
	fmt.Printf("  %-13s %-10s %9s %9s %9s %9s %9s\n", "answer", "user", "median", "p10", "p90", "p99", "cpu med")
	for k := 0; k < kinds; k++ {
		s := summarize(tm.samples[k])
		fmt.Printf("  %-13s %-10s %9.2f %9.2f %9.2f %9.2f %9.2f  ms\n", kindNames[k], tm.users[k], s.median, s.p10, s.p90, s.p99, s.cpuMedian)
	}
	c := compareUnknown(tm)
	fmt.Printf("  unknown minus not enrolled, medians: %+.3f ms, %.0f%% bootstrap interval [%+.3f, %+.3f] ms\n", c.diff, confidence*100, c.lo, c.hi)
	fmt.Printf("  Mann-Whitney U: p = %.3g, P(unknown slower) = %.3f; distinguishable at the 95%% level: %s\n", c.p, c.auc, yesNo(c.distinguishable))
	if tm.mismatches == 0 {
		fmt.Printf("  what pamtester shows for unknown and not enrolled: byte-identical in all %d samples (output and exit status %d)\n", tm.compared, tm.shown[kindUnknown].exit)
	} else {
		fmt.Printf("  what pamtester shows for unknown and not enrolled: DIFFERENT in %d samples; first: %s\n", tm.mismatches, tm.mismatch)
	}
}

// cell makes text fit in a markdown table cell.
func cell(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "|", `\|`)
	return "`" + strings.ReplaceAll(s, "\n", "` ⏎ `") + "`"
}

func markdown(env string, cmp *comparison, targets []*target, n int, baseNote string, alone map[*target]aloneResult, tm *timingResult) string {
	var b strings.Builder
	ga, gaOK := summarize(cmp.ga), summarize(cmp.gaOK)
	fmt.Fprintf(&b, "Measured by `make bench` (internal/tools/pambench) on %s.\n\n", env)
	fmt.Fprintf(&b, "**Before and after**: pamtester, %d authentications of each kind through each module, all interleaved in one run: root with a wrong code, and a new user each time with the right code. Medians of wall and CPU time (pamtester and what it waited for), and their ratio to google-authenticator-libpam.\n\n", n)
	b.WriteString("| | wrong code: wall | CPU | wall × | CPU × | right code: wall | CPU | wall × | CPU × |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i := len(targets) - 1; i >= 0; i-- {
		t := targets[i]
		s, ok := summarize(cmp.otp[t]), summarize(cmp.otpOK[t])
		fmt.Fprintf(&b, "| otpgate %s | %.2f ms | %.2f ms | %.2f | %.2f | %.2f ms | %.2f ms | %.2f | %.2f |\n", t.name,
			s.median, s.cpuMedian, s.median/ga.median, s.cpuMedian/ga.cpuMedian,
			ok.median, ok.cpuMedian, ok.median/gaOK.median, ok.cpuMedian/gaOK.cpuMedian)
	}
	fmt.Fprintf(&b, "| google-authenticator-libpam | %.2f ms | %.2f ms | 1 | 1 | %.2f ms | %.2f ms | 1 | 1 |\n", ga.median, ga.cpuMedian, gaOK.median, gaOK.cpuMedian)
	if len(targets) > 1 {
		fmt.Fprintf(&b, "\nWrong code, %s. Right code, %s.\n", nowVsBaseline(cmp.otp[targets[0]], cmp.otp[targets[1]]), nowVsBaseline(cmp.otpOK[targets[0]], cmp.otpOK[targets[1]]))
	}
	var parts []string
	for i := len(targets) - 1; i >= 0; i-- {
		if a := alone[targets[i]]; a.err == nil {
			parts = append(parts, fmt.Sprintf("%s %.2f ms wall, %.2f ms CPU, peak RSS %d KiB", targets[i].name, ms(a.wall), ms(a.cpu), a.rss))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, "\nThe helper alone (started as the module starts it, no libpam, no pamtester), medians: %s.\n", strings.Join(parts, "; "))
	}
	if baseNote != "" {
		fmt.Fprintf(&b, "\n(%s.)\n", baseNote)
	}
	if tm == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "\n**Timing of the answers without the code**: pamtester through pam_otpgate and the helper, no `nullok`, %d samples of each answer, the four in a new random order every round; wall time in ms.\n\n", tm.n)
	b.WriteString("| answer | median | p10 | p90 | p99 | CPU median | what pamtester shows (exit status) |\n|---|---:|---:|---:|---:|---:|---|\n")
	for k := 0; k < kinds; k++ {
		s := summarize(tm.samples[k])
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s (%d) |\n", kindNames[k], s.median, s.p10, s.p90, s.p99, s.cpuMedian, cell(tm.shown[k].out), tm.shown[k].exit)
	}
	c := compareUnknown(tm)
	fmt.Fprintf(&b, "\nUnknown user (not in /etc/passwd) against a known user who is not enrolled (%s): difference of the medians %+.3f ms, %.0f %% bootstrap interval [%+.3f, %+.3f] ms (%d resamples); Mann-Whitney U p = %.3g, probability that an unknown-user answer is the slower %.3f. Distinguishable at the 95 %% level: **%s**. ",
		tm.users[kindNotEnrolled], c.diff, confidence*100, c.lo, c.hi, resamples, c.p, c.auc, yesNo(c.distinguishable))
	if tm.mismatches == 0 {
		fmt.Fprintf(&b, "What they see (pamtester's output and exit status) was byte-identical in all %d answers.\n", tm.compared)
	} else {
		fmt.Fprintf(&b, "What they see DIFFERED in %d answers: %s.\n", tm.mismatches, tm.mismatch)
	}
	return b.String()
}
