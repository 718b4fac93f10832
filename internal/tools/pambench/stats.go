package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// percentile is the p-th percentile (0 to 100) of sorted, interpolated
// linearly between the two nearest ranks (R's and NumPy's default).
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	h := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(h))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// summary is the spread of one kind of sample, in milliseconds.
type summary struct {
	n                     int
	median, p10, p90, p99 float64
	cpuMedian             float64
	wall                  []float64 // sorted
}

func summarize(s []sample) summary {
	wall := make([]float64, len(s))
	cpu := make([]float64, len(s))
	for i, x := range s {
		wall[i], cpu[i] = ms(x.wall), ms(x.cpu)
	}
	sorted := slices.Clone(wall)
	slices.Sort(sorted)
	slices.Sort(cpu)
	return summary{
		n: len(s), median: percentile(sorted, 50), p10: percentile(sorted, 10),
		p90: percentile(sorted, 90), p99: percentile(sorted, 99), cpuMedian: percentile(cpu, 50),
		wall: sorted,
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bootstrapMedianDiff is a percentile-bootstrap confidence interval, at
// level conf (0.95), for median(b) - median(a): resamples of each with
// replacement, from a fixed seed so that a report can be reproduced from
// its samples.
func bootstrapMedianDiff(a, b []float64, resamples int, conf float64) (lo, hi float64) {
	r := rand.New(rand.NewPCG(7, 7))
	diffs := make([]float64, resamples)
	ra, rb := make([]float64, len(a)), make([]float64, len(b))
	for i := range diffs {
		for j := range ra {
			ra[j] = a[r.IntN(len(a))]
		}
		for j := range rb {
			rb[j] = b[r.IntN(len(b))]
		}
		slices.Sort(ra)
		slices.Sort(rb)
		diffs[i] = percentile(rb, 50) - percentile(ra, 50)
	}
	slices.Sort(diffs)
	tail := (1 - conf) / 2 * 100
	return percentile(diffs, tail), percentile(diffs, 100-tail)
}

// mannWhitney is the two-sided Mann-Whitney U test of a against b, by the
// normal approximation with the tie correction and a continuity
// correction (what scipy.stats.mannwhitneyu(method="asymptotic") gives).
// auc is U/(len(a)*len(b)), the probability that a sample of a is larger
// than one of b (ties count half): 0.5 when neither tends to be larger.
func mannWhitney(a, b []float64) (p, auc float64) {
	type v struct {
		x     float64
		fromA bool
	}
	all := make([]v, 0, len(a)+len(b))
	for _, x := range a {
		all = append(all, v{x, true})
	}
	for _, x := range b {
		all = append(all, v{x, false})
	}
	slices.SortFunc(all, func(p, q v) int {
		switch {
		case p.x < q.x:
			return -1
		case p.x > q.x:
			return 1
		}
		return 0
	})
	n1, n2, n := float64(len(a)), float64(len(b)), float64(len(all))
	var rankA, ties float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].x == all[i].x {
			j++
		}
		rank := float64(i+j+1) / 2 // ranks i+1 .. j, averaged
		for k := i; k < j; k++ {
			if all[k].fromA {
				rankA += rank
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	u := rankA - n1*(n1+1)/2
	mean := n1 * n2 / 2
	sd := math.Sqrt(n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1))))
	auc = u / (n1 * n2)
	if sd == 0 {
		return 1, auc
	}
	z := (math.Abs(u-mean) - 0.5) / sd
	if z < 0 {
		z = 0
	}
	return math.Erfc(z / math.Sqrt2), auc
}
