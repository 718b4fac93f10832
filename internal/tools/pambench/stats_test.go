package main

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-4 }

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {10, 1.3}, {50, 2.5}, {90, 3.7}, {100, 4}} {
		if got := percentile(s, c.p); !near(got, c.want) {
			t.Errorf("percentile(%v, %v) = %v, want %v", s, c.p, got, c.want)
		}
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("percentile of one sample = %v, want 7", got)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of no samples is not NaN")
	}
}

func TestMannWhitney(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5}
	b := []float64{6, 7, 8, 9, 10}
	// U = 0; z = (12.5 - 0.5) / sqrt(25/12 * 11); p = erfc(z/sqrt 2).
	p, auc := mannWhitney(a, b)
	if !near(p, 0.0121857) || auc != 0 {
		t.Errorf("separated samples: p %v auc %v, want 0.0121857 and 0", p, auc)
	}
	if p2, auc2 := mannWhitney(b, a); !near(p2, p) || auc2 != 1 {
		t.Errorf("swapped: p %v auc %v, want %v and 1", p2, auc2, p)
	}
	// The same values on both sides: nothing to tell them apart.
	same := []float64{3, 1, 2, 2, 5, 4}
	if p, auc := mannWhitney(same, same); p != 1 || auc != 0.5 {
		t.Errorf("identical samples: p %v auc %v, want 1 and 0.5", p, auc)
	}
	// All tied: no variance at all.
	if p, auc := mannWhitney([]float64{2, 2}, []float64{2, 2, 2}); p != 1 || auc != 0.5 {
		t.Errorf("all tied: p %v auc %v, want 1 and 0.5", p, auc)
	}
}

func TestBootstrapMedianDiff(t *testing.T) {
	flat := func(v float64, n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	if lo, hi := bootstrapMedianDiff(flat(5, 50), flat(15, 60), 200, 0.95); lo != 10 || hi != 10 {
		t.Errorf("constant samples: [%v, %v], want [10, 10]", lo, hi)
	}
	a, b, c := make([]float64, 1000), make([]float64, 1000), make([]float64, 1000)
	for i := range a {
		a[i] = float64(i)
		b[i] = float64((i*7919)%1000) + 100 // a permutation, shifted by 100
		c[i] = float64((i * 7919) % 1000)   // a permutation, not shifted
	}
	if lo, hi := bootstrapMedianDiff(a, b, 500, 0.95); lo <= 0 || lo > 100 || hi < 100 {
		t.Errorf("shift of 100: [%v, %v], want an interval above 0 that holds 100", lo, hi)
	}
	if lo, hi := bootstrapMedianDiff(a, c, 500, 0.95); lo >= 0 || hi <= 0 {
		t.Errorf("no shift: [%v, %v], want an interval that holds 0", lo, hi)
	}
}
