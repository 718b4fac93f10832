package main

import (
	"os"
	"testing"
	"time"
)

// The /proc readings the daemon's figures come from parse on this kernel
// and move with the CPU time spent.
func TestProcReadings(t *testing.T) {
	d := &daemon{pid: os.Getpid()}
	before, err := d.cpu()
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(100 * time.Millisecond)
	for x := 0; time.Now().Before(end); x++ {
		_ = x * x
	}
	after, err := d.cpu()
	if err != nil {
		t.Fatal(err)
	}
	// 100 ms of wall time spinning is at least 10 ms on a CPU even on a
	// busy machine. schedstat is absent without CONFIG_SCHED_INFO.
	if after.ticks <= before.ticks || (after.ns > 0 && after.ns-before.ns < int64(10*time.Millisecond)) {
		t.Errorf("100 ms of spinning: ticks %d -> %d, schedstat %d -> %d ns", before.ticks, after.ticks, before.ns, after.ns)
	}
	m, err := d.memory()
	if err != nil {
		t.Fatal(err)
	}
	if m.rss <= 0 || m.hwm < m.rss || m.fds < 3 {
		t.Errorf("memory of this process: %+v", m)
	}
}

func TestPerAuth(t *testing.T) {
	var c daemonCPU
	c.add(cpuReading{ticks: 10, ns: 1e6}, cpuReading{ticks: 13, ns: 31e6})
	c.add(cpuReading{ticks: 20, ns: 50e6}, cpuReading{ticks: 21, ns: 60e6})
	stat, sched := c.perAuth()
	if stat != 20*time.Millisecond || sched != 20*time.Millisecond {
		t.Errorf("4 ticks and 40 ms over 2 runs: got %v and %v per authentication, want 20 ms each", stat, sched)
	}
	if s, n := (daemonCPU{}).perAuth(); s != 0 || n != 0 {
		t.Errorf("no runs: %v %v", s, n)
	}
}
