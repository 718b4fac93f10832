package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// sysconf(_SC_CLK_TCK)): 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// daemon is an otpgate-helper --listen started by pambench.
type daemon struct {
	cmd    *exec.Cmd
	pid    int
	socket string
	log    string
	exited chan struct{} // closed once the daemon is reaped
	once   sync.Once
}

// startDaemon starts helper --listen runDir/helper.sock as the install
// would run it (root, an empty environment, standard error to logPath),
// and waits for it to listen. runDir is made root-owned, mode 0755, as
// the helper and the module want the socket's directory.
func startDaemon(c *cleanups, helper, runDir, logPath string) (*daemon, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(runDir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d := &daemon{socket: filepath.Join(runDir, "helper.sock"), log: logPath}
	d.cmd = exec.Command(helper, "--listen", d.socket)
	d.cmd.Env = []string{}
	d.cmd.Stderr = logf
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s --listen: %w", helper, err)
	}
	d.pid = d.cmd.Process.Pid
	c.add(d.stop)
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st syscall.Stat_t
		if syscall.Lstat(d.socket, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK {
			// Listening once the socket answers a connect.
			if fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0); err == nil {
				err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: d.socket})
				syscall.Close(fd)
				if err == nil {
					return d, nil
				}
			}
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("%s --listen %s exited at start: %s", helper, d.socket, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("%s --listen %s did not listen within 10 s: %s", helper, d.socket, tail(logPath))
		}
	}
}

// stop ends the daemon (SIGTERM, then SIGKILL after 10 s), once.
func (d *daemon) stop() {
	d.once.Do(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
}

// tail is the end of a log file, for an error message.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	if len(b) == 0 {
		return "(its log " + path + " is empty)"
	}
	return string(b)
}

// cpuReading is the daemon's CPU time so far: utime+stime of
// /proc/PID/stat in clock ticks, and the sum of the first field of
// /proc/PID/task/*/schedstat (time on a CPU, in ns: finer, a check).
type cpuReading struct {
	ticks int64
	ns    int64
}

func (d *daemon) cpu() (cpuReading, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.pid))
	if err != nil {
		return cpuReading{}, fmt.Errorf("the daemon (pid %d): %w; its log: %s", d.pid, err, tail(d.log))
	}
	// Fields after the command name in parentheses: state is field 3,
	// utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return cpuReading{}, fmt.Errorf("/proc/%d/stat: unexpected format %q", d.pid, b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return cpuReading{}, fmt.Errorf("/proc/%d/stat: unexpected format %q", d.pid, b)
	}
	r := cpuReading{ticks: ut + st}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", d.pid))
	for _, t := range tasks {
		if s, err := os.ReadFile(t); err == nil {
			if v, err := strconv.ParseInt(strings.Fields(string(s) + " 0")[0], 10, 64); err == nil {
				r.ns += v
			}
		}
	}
	return r, nil
}

// memory is the daemon's resident set and peak (KiB, /proc/PID/status)
// and its open descriptors.
type memory struct {
	rss, hwm int64
	fds      int
}

func (d *daemon) memory() (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.pid))
	if err != nil {
		return memory{}, fmt.Errorf("the daemon (pid %d): %w; its log: %s", d.pid, err, tail(d.log))
	}
	var m memory
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = n
		case "VmHWM":
			m.hwm = n
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid))
	m.fds = len(fds)
	return m, nil
}

// daemonCPU adds up the daemon's CPU time over pamtester runs.
type daemonCPU struct {
	ticks, ns int64
	n         int
}

func (c *daemonCPU) add(before, after cpuReading) {
	c.ticks += after.ticks - before.ticks
	c.ns += after.ns - before.ns
	c.n++
}

// perAuth is the daemon's CPU time per authentication from /proc/PID/stat,
// and from schedstat.
func (c daemonCPU) perAuth() (stat, sched time.Duration) {
	if c.n == 0 {
		return 0, 0
	}
	return time.Duration(c.ticks) * clockTick / time.Duration(c.n), time.Duration(c.ns / int64(c.n))
}

// loadOpts are the flags of the daemon load.
type loadOpts struct {
	n, clients, users int
}

// loadRun is what daemonload printed for one block, and the daemon's CPU
// time over it.
type loadRun struct {
	Clients   int            `json:"clients"`
	Users     int            `json:"users"`
	N         int            `json:"n"`
	ElapsedNS int64          `json:"elapsed_ns"`
	PerSecond float64        `json:"per_second"`
	P50NS     int64          `json:"p50_ns"`
	P90NS     int64          `json:"p90_ns"`
	P99NS     int64          `json:"p99_ns"`
	MaxNS     int64          `json:"max_ns"`
	Resets    int64          `json:"resets"`
	Verdicts  map[string]int `json:"verdicts"`
	ClientCPU int64          `json:"client_cpu_ns"`
	daemon    daemonCPU
	store     string // "disk" or "tmpfs"
}

func (r loadRun) daemonPerAuth() time.Duration {
	s, _ := r.daemon.perAuth()
	return s
}

// loadResult is the daemon under load.
type loadResult struct {
	opts      loadOpts
	rest      memory        // fresh, before any request
	idleCPU   time.Duration // the daemon's CPU time over restFor at rest
	restFor   time.Duration
	after     []memory  // after each round
	afterN    []int     // authentications by then
	one, many []loadRun // per round
	serial    []loadRun // one client at a time: disk, then tmpfs
	tmpfsNote string    // why there is no tmpfs run
}

// load runs the daemon load (see the package comment).
func load(c *cleanups, in install, src, dir string, o loadOpts) (*loadResult, error) {
	res := &loadResult{opts: o, restFor: 2 * time.Second}
	ldDir := filepath.Join(dir, "load")
	if err := os.MkdirAll(ldDir, 0o755); err != nil {
		return nil, err
	}
	tool := filepath.Join(dir, "daemonload")
	build := exec.Command(goBinary(), "build", "-o", tool, "./internal/tools/daemonload")
	build.Dir = src
	build.Env = withoutEnv(os.Environ(), "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building internal/tools/daemonload: %v\n%s", err, out)
	}
	var names []string
	for i := 0; i < o.users; i++ {
		names = append(names, fmt.Sprintf("load%04d", i))
	}
	oneFile, manyFile := filepath.Join(ldDir, "one-user"), filepath.Join(ldDir, "users")
	if err := os.WriteFile(oneFile, []byte(names[0]+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(manyFile, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	diskCfg := filepath.Join(ldDir, "load.toml")
	if err := loadStore(in, diskCfg, filepath.Join(ldDir, "store"), names); err != nil {
		return nil, err
	}
	// The same users on a tmpfs, for the cost of the fsyncs.
	var tmpfsCfg string
	var shm syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &shm) == nil && uint32(shm.Type) == 0x01021994 {
		td, err := os.MkdirTemp("/dev/shm", "otpgate-bench-")
		if err != nil {
			return nil, err
		}
		c.add(func() { os.RemoveAll(td) })
		if err := os.Chmod(td, 0o755); err != nil {
			return nil, err
		}
		tmpfsCfg = filepath.Join(td, "load.toml")
		if err := loadStore(in, tmpfsCfg, filepath.Join(td, "store"), names); err != nil {
			return nil, err
		}
	} else {
		res.tmpfsNote = "/dev/shm is not a tmpfs here"
	}

	d, err := startDaemon(c, in.helper, filepath.Join(ldDir, "run"), filepath.Join(dir, "daemon-load.log"))
	if err != nil {
		return nil, err
	}
	defer d.stop()
	// At rest: started, listening, nothing asked yet.
	time.Sleep(500 * time.Millisecond)
	if res.rest, err = d.memory(); err != nil {
		return nil, err
	}
	c0, err := d.cpu()
	if err != nil {
		return nil, err
	}
	time.Sleep(res.restFor)
	c1, err := d.cpu()
	if err != nil {
		return nil, err
	}
	res.idleCPU = time.Duration(c1.ticks-c0.ticks) * clockTick

	runTool := func(cfg, users string, clients, n int) (loadRun, error) {
		before, err := d.cpu()
		if err != nil {
			return loadRun{}, err
		}
		cmd := exec.Command(tool, "-socket", d.socket, "-config", cfg, "-users", users,
			"-clients", strconv.Itoa(clients), "-n", strconv.Itoa(n))
		cmd.WaitDelay = 10 * time.Second
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		timer := time.AfterFunc(10*time.Minute, func() { cmd.Process.Kill() })
		out, err := cmd.Output()
		timer.Stop()
		if err != nil {
			return loadRun{}, fmt.Errorf("daemonload %s: %v: %s %s; the daemon's log: %s", filepath.Base(users), err, bytes.TrimSpace(stderr.Bytes()), bytes.TrimSpace(out), tail(d.log))
		}
		after, err := d.cpu()
		if err != nil {
			return loadRun{}, err
		}
		var r loadRun
		if err := json.Unmarshal(out, &r); err != nil {
			return loadRun{}, fmt.Errorf("daemonload printed %q: %v", out, err)
		}
		r.daemon.add(before, after)
		r.daemon.n = r.N
		return r, nil
	}

	done := 0
	for round := 0; round < 2; round++ {
		one, err := runTool(diskCfg, oneFile, o.clients, o.n)
		if err != nil {
			return nil, err
		}
		many, err := runTool(diskCfg, manyFile, o.clients, o.n)
		if err != nil {
			return nil, err
		}
		res.one, res.many = append(res.one, one), append(res.many, many)
		done += one.N + many.N
		m, err := d.memory()
		if err != nil {
			return nil, err
		}
		res.after, res.afterN = append(res.after, m), append(res.afterN, done)
	}

	serialN := max(o.n/5, 100)
	for _, s := range []struct{ cfg, name string }{{diskCfg, "disk"}, {tmpfsCfg, "tmpfs"}} {
		if s.cfg == "" {
			continue
		}
		r, err := runTool(s.cfg, manyFile, 1, serialN)
		if err != nil {
			return nil, err
		}
		r.store = s.name
		res.serial = append(res.serial, r)
	}
	return res, nil
}

// loadStore writes a config for the load at cfg (max_failures 100, above
// daemonload's clear every 90; no backup codes: a wrong six-digit code
// never reads them) and enrolls names in its store.
func loadStore(in install, cfg, store string, names []string) error {
	body := fmt.Sprintf("store = %q\n[lockout]\nmax_failures = 100\n[backup_codes]\ncount = 0\n", store)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(cfg, 0o644); err != nil {
		return err
	}
	for _, u := range names {
		out, err := exec.Command(in.otpgate, "--config", cfg, "enroll", "--user", u, "--force", "--no-confirm", "--json", "--qr", "none").CombinedOutput()
		if err != nil {
			return fmt.Errorf("otpgate --config %s enroll --user %s: %v %s", cfg, u, err, out)
		}
	}
	return nil
}
