package pamtest

// Evidence for issue 7's "hostile host environment for every route": a
// user controls the starting conditions of every process they start
// (resource limits, signal dispositions and signals, descriptors 0 to 2,
// the environment, the umask) and tries to turn them into extra guesses,
// reused codes, files written where they choose, or a lock held for
// another user. Three routes are attacked:
//
//	A: a setuid-root host (a copy of pamtester standing in for su) run by
//	   nobody against another user's account, code-only stack: the module
//	   runs the helper itself, as root;
//	B: pamtester run by nobody for their own account: a host that is not
//	   root, so the module runs the setuid launcher, and the helper serves
//	   in self mode;
//	C: the setuid launcher run by nobody directly, the test conversing
//	   with it on a socket as otpgate would (a verify request, self mode).
//
// Every condition is applied by testdata/hostile/wrap.c, run as nobody
// just before it execs the host (A, B) or the launcher (C).

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/keystore"
)

// hostileConfig: three wrong codes lock for an hour; no backup codes
// (enrolling is then cheap).
const hostileConfig = "[lockout]\nmax_failures = 3\nlock_duration = \"1h\"\n[backup_codes]\ncount = 0\n"

const hostileMaxFailures = 3

// hostileBound is how long any attempt may take; a longer one is a hang,
// and a hang is a failure.
const hostileBound = 15 * time.Second

// hostileStall is how long a host that cannot finish by the attacker's
// design (its standard input a pipe nobody writes) runs before the
// attacker kills it.
const hostileStall = 700 * time.Millisecond

// hostileKit is what the attacker prepared: the wrapper that sets the
// conditions, an LD_PRELOAD library and fake programs that leave markers,
// the directories that must stay empty, and files that root must never
// open.
type hostileKit struct {
	dir     string // root-owned 0755
	wrap    string // testdata/hostile/wrap.c
	preload string // testdata/hostile/preload.c
	fakeBin string // a PATH directory of fake programs
	marks   string // 1777: where the preload library and fake programs mark
	empty   []string
	home    string // HOME, 1777, stays empty
	tmp     string // TMPDIR, 1777, stays empty
	cwd     string // the working directory, 1777, stays empty
	fifo    string // a FIFO only root can open, nobody writes: TZ
	canary  string // a file only root can open, watched: TZ, LC_ALL
	roFile  string // a read-only file for descriptors 1 and 2

	fifoOpened   atomic.Bool
	preloadTried atomic.Bool // LD_PRELOAD was set for pamtester run as nobody
	inotify      int

	killer   *exec.Cmd // wrap -S as nobody: the attacker's kill(2)
	killIn   *os.File
	killOut  *bytes.Buffer
	killMu   sync.Mutex
	killResp chan int
}

func newHostileKit(t *testing.T) *hostileKit {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("pamtester"); err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("pamtester is not installed (scripts/test-deps.sh installs it); OTPGATE_REQUIRE_TOOLS is set, so this is a failure")
		}
		t.Skip("pamtester is not installed (apt-get install pamtester, or scripts/test-deps.sh)")
	}
	nobodyName(t)
	dir, err := os.MkdirTemp(buildDir, "hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	k := &hostileKit{dir: dir, wrap: filepath.Join(dir, "wrap"), preload: filepath.Join(dir, "preload.so"),
		fakeBin: filepath.Join(dir, "bin"), marks: filepath.Join(dir, "marks"), home: filepath.Join(dir, "home"),
		tmp: filepath.Join(dir, "tmp"), cwd: filepath.Join(dir, "cwd"), fifo: filepath.Join(dir, "tz-fifo"),
		canary: filepath.Join(dir, "canary"), roFile: filepath.Join(dir, "read-only")}
	k.empty = []string{k.home, k.tmp, k.cwd}
	for _, d := range append([]string{k.marks}, k.empty...) {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o777|os.ModeSticky)
	}
	src := filepath.Join(RepoRoot(), "internal", "pamtest", "testdata", "hostile")
	for _, c := range [][]string{
		{"-Wall", "-Wextra", "-Werror", "-O2", "-o", k.wrap, filepath.Join(src, "wrap.c")},
		{"-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC", "-DMARK_DIR=\"" + k.marks + "\"", "-o", k.preload, filepath.Join(src, "preload.c")},
	} {
		if b, err := exec.Command("cc", c...).CombinedOutput(); err != nil {
			t.Fatalf("cc %q: %v\n%s", c, err, b)
		}
	}
	os.Chmod(k.wrap, 0o755)
	os.Chmod(k.preload, 0o755)
	fake, err := os.ReadFile(filepath.Join(src, "fake.sh"))
	if err != nil {
		t.Fatal(err)
	}
	fake = bytes.ReplaceAll(fake, []byte("MARK_DIR"), []byte(k.marks))
	if err := os.Mkdir(k.fakeBin, 0o755); err != nil {
		t.Fatal(err)
	}
	// Whatever the host, the module, the launcher or the helper might
	// run by name.
	for _, n := range []string{"otpgate-helper", "otpgate-launch-helper", "otpgate", "sh", "bash", "logger", "unix_chkpwd", "id", "cat", "ls", "sendmail"} {
		if err := os.WriteFile(filepath.Join(k.fakeBin, n), fake, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(k.fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{k.canary, k.roFile} {
		if err := os.WriteFile(f, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(k.roFile, 0o644)

	// Root opening the FIFO for reading: a writer that does not wait
	// then gets through instead of ENXIO (and frees the reader).
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if fd, err := unix.Open(k.fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				k.fifoOpened.Store(true)
				unix.Close(fd)
			}
		}
	}()
	if k.inotify, err = unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(k.inotify, k.canary, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}

	k.killer = asNobody(k.wrap, "-S")
	in, err := k.killer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	k.killIn = in.(*os.File)
	out, err := k.killer.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.killer.Start(); err != nil {
		t.Fatal(err)
	}
	k.killResp = make(chan int, 1)
	go func() {
		b := make([]byte, 64)
		var line []byte
		for {
			n, err := out.Read(b)
			for _, c := range b[:n] {
				if c == '\n' {
					v, _ := strconv.Atoi(string(line))
					k.killResp <- v
					line = line[:0]
				} else {
					line = append(line, c)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		k.killIn.Close()
		k.killer.Wait()
		close(stop)
		<-done
		unix.Close(k.inotify)
	})
	return k
}

// kill sends sig to pid (< 0: a process group) as nobody; it returns the
// errno, 0 when sent.
func (k *hostileKit) kill(sig syscall.Signal, pid int) syscall.Errno {
	k.killMu.Lock()
	defer k.killMu.Unlock()
	fmt.Fprintf(k.killIn, "%d %d\n", int(sig), pid)
	select {
	case v := <-k.killResp:
		return syscall.Errno(v)
	case <-time.After(5 * time.Second):
		return syscall.ETIMEDOUT
	}
}

// check fails t for anything written outside the store or opened by root
// on the attacker's behalf. Markers left by nobody's own processes (the
// preload library in pamtester run as nobody) are fine: they show the
// library works. It returns those markers.
func (k *hostileKit) check(t *testing.T) []string {
	t.Helper()
	for _, d := range k.empty {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Errorf("%s is not empty: %q", d, names)
		}
	}
	var own []string
	ents, _ := os.ReadDir(k.marks)
	for _, e := range ents {
		n := e.Name()
		if strings.Contains(n, "uid0-") || strings.Contains(n, "euid0-") || strings.HasPrefix(n, "path-0-") {
			t.Errorf("a process running as root loaded the user's library or ran the user's program: %s", n)
		} else {
			own = append(own, n)
		}
	}
	if k.fifoOpened.Load() {
		t.Errorf("a process opened the TZ FIFO %s (only root can)", k.fifo)
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(k.inotify, buf); n > 0 {
		t.Errorf("a process opened %s, named in TZ and LC_ALL (only root can)", k.canary)
	}
	return own
}

// checkHostileStore fails t unless the store holds only the directories users,
// state and locks (0700) and in them only <user>.toml and <user>.lock
// files (0600), all owned by root.
func checkHostileStore(t *testing.T, store *keystore.Store) {
	t.Helper()
	if _, err := os.Stat(store.Dir()); errors.Is(err, os.ErrNotExist) {
		return // no attempt ran on this route
	}
	filepath.Walk(store.Dir(), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Errorf("store: %v", err)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(store.Dir(), p)
		dir, name := filepath.Split(rel)
		want := os.FileMode(0o600)
		ok := false
		switch {
		case rel == ".":
			want, ok = os.ModeDir|0o700, true
		case fi.IsDir():
			want, ok = os.ModeDir|0o700, dir == "" && (name == "users" || name == "state" || name == "locks")
		case dir == "locks/":
			ok = strings.HasSuffix(name, ".lock")
		case dir == "users/" || dir == "state/":
			ok = strings.HasSuffix(name, ".toml") && !strings.HasPrefix(name, ".")
		}
		if !ok {
			t.Errorf("store: unexpected %s (%v)", rel, fi.Mode())
		} else if fi.Mode() != want || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("store: %s is %v %d:%d, want %v root:root", rel, fi.Mode(), st.Uid, st.Gid, want)
		}
		return nil
	})
}

// hcond is one set of starting conditions.
type hcond struct {
	name string
	wrap []string  // wrap.c options
	env  []string  // replace or add variables
	fd   [3]string // "", "closed", "full", "pipe-unread", "pipe-broken", "ro"
	// blocks: the routes on which the attempt is impossible under this
	// condition: always denied, nothing written.
	blocks string
	// noCode: the host cannot pass the code on (its standard input is
	// not the answer): every attempt is one with a wrong code.
	noCode bool
	// stall: the host waits for ever, by the attacker's design; it is
	// killed after stallFor (default hostileStall).
	stall    bool
	stallFor time.Duration
	// leader: route C's launcher leads its process group, as a command
	// started by a job-control shell does (else it does not, as when
	// otpgate runs it).
	leader bool
	// unseen: the routes on which the host dies before it says a code
	// was accepted.
	unseen string
	// either: the routes on which it may work or be blocked (RLIMIT_NPROC
	// counts every process of nobody on the machine).
	either string
}

func (c hcond) blocked(route byte) bool { return strings.IndexByte(c.blocks, route) >= 0 }

// overlaps reports whether c sets a resource limit or an fd in set, and
// adds what c sets to set.
func (c hcond) overlaps(set map[string]bool) bool {
	var keys []string
	for i := 0; i+1 < len(c.wrap); i++ {
		if c.wrap[i] == "-r" {
			res, _, _ := strings.Cut(c.wrap[i+1], "=")
			keys = append(keys, "limit "+res)
		}
	}
	for fd, kind := range c.fd {
		if kind != "" {
			keys = append(keys, fmt.Sprint("fd ", fd))
		}
	}
	for _, k := range keys {
		if set[k] {
			return true
		}
	}
	for _, k := range keys {
		set[k] = true
	}
	return false
}

// hostileConditions is every condition, one at a time.
func hostileConditions(k *hostileKit) []hcond {
	cs := []hcond{{name: "none (control)"}}
	// A limit the user sets is a soft one (the hard limit stays) or both.
	// The module's child and the launcher raise them again; raising a
	// hard limit takes CAP_SYS_RESOURCE, which some containers drop from
	// every process: then a hard limit below what the helper needs makes
	// every attempt impossible instead.
	canRaise, _ := unix.PrctlRetInt(unix.PR_CAPBSET_READ, unix.CAP_SYS_RESOURCE, 0, 0, 0)
	limit := func(res, label, n, blocks string) {
		cs = append(cs, hcond{name: fmt.Sprintf("RLIMIT_%s %s soft", strings.ToUpper(res), label), wrap: []string{"-r", res + "=" + n}, blocks: blocks})
		hard := hcond{name: fmt.Sprintf("RLIMIT_%s %s hard", strings.ToUpper(res), label), wrap: []string{"-r", res + "=" + n + ":" + n}, blocks: blocks}
		if canRaise == 0 && res != "sigpending" && res != "memlock" { // the two the helper leaves alone
			hard.blocks = "ABC"
		}
		cs = append(cs, hard)
	}
	for _, n := range []string{"0", "1", "130", "511", "512", "1023", "1024", "4096"} { // around the old and the new state file size
		limit("fsize", n, n, "")
	}
	for _, n := range []string{"3", "4", "8", "16"} {
		blocks := ""
		switch n {
		case "3":
			blocks = "ABC" // no program here can load its libraries
		case "4":
			blocks = "AB" // pamtester cannot read its PAM service files
		}
		limit("nofile", n, n, blocks)
	}
	for _, n := range []int{64, 256} {
		limit("as", fmt.Sprint(n, " MiB"), strconv.Itoa(n<<20), "")
	}
	limit("cpu", "1 s", "1", "")
	// Not in the list, as cheap: what else the helper resets or
	// a Go program might need.
	limit("stack", "128 KiB", strconv.Itoa(128<<10), "")
	limit("data", "16 MiB", strconv.Itoa(16<<20), "")
	limit("sigpending", "0", "0", "")
	limit("memlock", "0", "0", "")
	for _, n := range []string{"1", "2", "8"} {
		// Counted per real uid, against every process of nobody on the
		// machine: pamtester as nobody may or may not be able to fork.
		cs = append(cs, hcond{name: "RLIMIT_NPROC " + n, wrap: []string{"-r", "nproc=" + n + ":" + n}, either: "BC"})
	}
	cs = append(cs, hcond{name: "all limits low", wrap: []string{"-r", "fsize=130", "-r", "nofile=16", "-r", "as=" + strconv.Itoa(256<<20), "-r", "cpu=1", "-r", "nproc=8", "-r", "core=0"}, either: "BC"})
	cs = append(cs,
		hcond{name: "umask 000", wrap: []string{"-u", "000"}},
		hcond{name: "signals ignored and blocked", wrap: []string{"-i", "17", "-i", "13", "-i", "15", "-i", "1", "-i", "2", "-i", "20", "-B"}},
	)
	for fd := 0; fd < 3; fd++ {
		for _, kind := range []string{"closed", "full", "pipe-unread", "pipe-broken", "ro"} {
			c := hcond{name: fmt.Sprintf("fd %d %s", fd, kind)}
			c.fd[fd] = kind
			switch {
			case fd == 0 && kind == "ro":
				// The answer comes from a read-only file: fine for
				// a host; the launcher wants its socket.
				c.blocks = "C"
			case fd == 0 && kind == "pipe-unread":
				c.stall, c.blocks = true, "ABC"
			case fd == 0:
				c.noCode, c.blocks = true, "ABC"
			case fd == 1 && kind == "pipe-broken":
				// pamtester says a success on its standard output,
				// and dies of SIGPIPE there: the code is used, the
				// attacker never hears it was right.
				c.unseen = "AB"
			case fd == 2 && kind == "pipe-broken":
				c.blocks = "AB" // pamtester dies of SIGPIPE at the prompt
			}
			cs = append(cs, c)
		}
	}
	cs = append(cs, hcond{name: "launcher leads its process group", leader: true, blocks: "C"})
	// Not in the list: with no_new_privs no setuid bit takes
	// effect, so the host (A) and the launcher run as the user.
	cs = append(cs, hcond{name: "no_new_privs", wrap: []string{"-N"}, blocks: "ABC"})
	cs = append(cs, hcond{name: "fds 0-2 closed", fd: [3]string{"closed", "closed", "closed"}, blocks: "ABC", noCode: true})
	// Each with a name that does not depend on the test's directory.
	envs := []struct {
		name string
		env  []string
	}{
		{"TZ=<FIFO>", []string{"TZ=" + k.fifo}},
		{"TZ=:<FIFO>", []string{"TZ=:" + k.fifo}},
		{"TZ=/etc/shadow", []string{"TZ=/etc/shadow"}},
		{"TZ=<watched file>", []string{"TZ=" + k.canary}},
		{"GODEBUG=fips140=only", []string{"GODEBUG=fips140=only"}},
		{"GODEBUG=<others>", []string{"GODEBUG=madvdontneed=0,invalidptr=1,panicnil=1,tracebackancestors=1000"}},
		{"GOTRACEBACK=crash", []string{"GOTRACEBACK=crash"}},
		{"GOMAXPROCS=1000", []string{"GOMAXPROCS=1000"}},
		{"GOGC=1", []string{"GOGC=1"}},
		{"GOMEMLIMIT=1", []string{"GOMEMLIMIT=1"}},
		{"LD_PRELOAD=<marker library>", []string{"LD_PRELOAD=" + k.preload}},
		{"LD_LIBRARY_PATH, LD_AUDIT", []string{"LD_LIBRARY_PATH=" + k.marks, "LD_AUDIT=" + k.preload}},
		{"PATH=<fake programs>", []string{"PATH=" + k.fakeBin}},
		{"HOME=<FIFO>", []string{"HOME=" + k.fifo}},
		{"TMPDIR=<FIFO>", []string{"TMPDIR=" + k.fifo}},
		{"LANG, LC_ALL, LANGUAGE, LOCPATH", []string{"LANG=xx_XX.UTF-8", "LC_ALL=" + k.canary, "LANGUAGE=" + k.canary, "LOCPATH=" + k.marks}},
		{"OTPGATE_CONFIG, OTPGATE_HELPER", []string{"OTPGATE_CONFIG=/tmp/evil.toml", "OTPGATE_HELPER=" + k.fakeBin + "/otpgate-helper"}},
	}
	var all []string
	for _, e := range envs {
		cs = append(cs, hcond{name: "env " + e.name, env: e.env})
		all = append(all, e.env...)
	}
	cs = append(cs, hcond{name: "env all at once", env: all})
	return cs
}

// hroute is one route with its account and store.
type hroute struct {
	kind     byte // 'A', 'B' or 'C'
	store    *keystore.Store
	host     string // A: the setuid pamtester; B: pamtester
	svc      string // A, B: the PAM service
	launcher string // C
	user     string // B, C: nobody's own account
	helper   string // the helper's path, to find it among the host's children
}

func (r *hroute) String() string {
	switch r.kind {
	case 'A':
		return "route A (setuid host, another user)"
	case 'B':
		return "route B (pamtester as the user)"
	}
	return "route C (launcher run by the user)"
}

// hres is what one attempt gave the attacker.
type hres struct {
	accepted bool
	verdict  string // "accepted", "auth-err", "max-tries", "denied" (output not seen), or "none"
	ended    string // how the host ended
	out      string
}

// attempt runs one attempt under c for user with answer, bounded. during,
// if set, runs while it does, with the host's process group.
func (k *hostileKit) attempt(t *testing.T, r *hroute, c hcond, user, answer string, during func(pgid int)) hres {
	t.Helper()
	res, err := k.run(r, c, user, answer, during)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// run is attempt for any goroutine: a hang or a set-up error is an error.
func (k *hostileKit) run(r *hroute, c hcond, user, answer string, during func(pgid int)) (hres, error) {
	env := map[string]string{"PATH": "/usr/bin:/bin", "HOME": k.home, "TMPDIR": k.tmp, "LANG": "C"}
	for _, e := range c.env {
		kv := strings.SplitN(e, "=", 2)
		env[kv[0]] = kv[1]
	}
	if _, ok := env["LD_PRELOAD"]; ok && r.kind == 'B' {
		k.preloadTried.Store(true)
	}
	var envList []string
	for key, v := range env {
		envList = append(envList, key+"="+v)
	}
	sort.Strings(envList)
	args := append([]string{}, c.wrap...)
	var closeAfter, childFiles []*os.File
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	var out syncBuffer
	var conn net.Conn
	files := make([]*os.File, 3)
	if r.kind == 'C' {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return hres{}, err
		}
		mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
		if conn, err = net.FileConn(mine); err != nil {
			return hres{}, err
		}
		mine.Close()
		defer conn.Close()
		childFiles = append(childFiles, theirs)
		files[0], files[1] = theirs, theirs
	}
	for fd, kind := range c.fd {
		var f *os.File
		var err error
		switch kind {
		case "":
			continue
		case "closed":
			f, err = os.Open(os.DevNull)
			args = append(args, "-c", strconv.Itoa(fd))
		case "full":
			f, err = os.OpenFile("/dev/full", os.O_RDWR, 0)
		case "ro":
			if fd == 0 {
				f, err = k.answerFile(answer)
			} else {
				f, err = os.Open(k.roFile)
			}
		case "pipe-unread", "pipe-broken":
			var pr, pw *os.File
			if pr, pw, err = os.Pipe(); err != nil {
				break
			}
			mine := pr
			f = pw
			if fd == 0 {
				f, mine = pr, pw
			}
			if kind == "pipe-broken" {
				mine.Close()
			} else {
				closeAfter = append(closeAfter, mine)
			}
		}
		if err != nil {
			return hres{}, err
		}
		childFiles = append(childFiles, f)
		files[fd] = f
	}
	var cmd *exec.Cmd
	if r.kind == 'C' {
		if !c.leader {
			// As otpgate runs it, or a shell in a pipeline: the
			// launcher does not lead the process group.
			args = append([]string{"-F"}, args...)
		}
		cmd = asNobody(k.wrap, append(args, "--", r.launcher)...)
	} else {
		cmd = asNobody(k.wrap, append(args, "--", r.host, r.svc, user, "authenticate")...)
	}
	cmd.Env, cmd.Dir = envList, k.cwd
	cmd.SysProcAttr.Setpgid = true
	if files[0] != nil {
		cmd.Stdin = files[0]
	} else {
		cmd.Stdin = strings.NewReader(answer + "\n")
	}
	if files[1] != nil {
		cmd.Stdout = files[1]
	} else {
		cmd.Stdout = &out
	}
	if files[2] != nil {
		cmd.Stderr = files[2]
	} else {
		cmd.Stderr = &out
	}
	if err := cmd.Start(); err != nil {
		return hres{}, err
	}
	for _, f := range childFiles {
		f.Close() // the host's now: the test keeps only its own ends
	}
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	type conv struct {
		v   string
		err error
	}
	conversed := make(chan conv, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseUI := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseUI()
	if r.kind == 'C' {
		var ui helper.UI = &recordUI{answer: answer}
		if c.stall && c.fd[0] == "" {
			// The attacker's client never answers.
			ui = stallUI{release}
		}
		go func() {
			v, err := helper.Converse(conn, protocol.Request{Op: protocol.OpVerify}, ui, hostileBound)
			conn.Close()
			conversed <- conv{v, err}
		}()
	}
	duringDone := make(chan struct{})
	go func() {
		defer close(duringDone)
		if during != nil {
			during(pgid)
		}
	}()
	var res hres
	var errs []error
	bound := hostileBound
	if c.stall {
		bound = hostileStall
		if c.stallFor != 0 {
			bound = c.stallFor
		}
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	var werr error
	select {
	case werr = <-waited:
	case <-timer.C:
		// The attacker's host, or for route C the client, is gone: a
		// helper that waits for an answer sees the end of its socket.
		syscall.Kill(-pgid, syscall.SIGKILL)
		if conn != nil {
			conn.Close()
		}
		select {
		case werr = <-waited:
		case <-time.After(hostileBound):
			syscall.Kill(pgid, syscall.SIGKILL) // the helper itself (route C)
			werr = <-waited
			errs = append(errs, fmt.Errorf("%v, %s: the helper outlived its client by %v", r, c.name, hostileBound))
		}
		if !c.stall {
			<-duringDone
			return hres{}, errors.Join(append(errs, fmt.Errorf("%v, %s: the attempt hung for %v:\n%s", r, c.name, bound, out.String()))...)
		}
		res.ended = "killed by the attacker after " + bound.String()
	}
	<-duringDone
	if r.kind == 'C' {
		releaseUI()
		var cv conv
		select {
		case cv = <-conversed:
		case <-time.After(hostileBound):
			conn.Close()
			cv = <-conversed
			errs = append(errs, fmt.Errorf("%v, %s: the conversation outlived the launcher by %v", r, c.name, hostileBound))
		}
		switch cv.v {
		case protocol.ResultSuccess:
			res.verdict = "accepted"
		case protocol.ResultAuthErr:
			res.verdict = "auth-err"
		case protocol.ResultMaxTries:
			res.verdict = "max-tries"
		default:
			res.verdict = "none"
		}
		// The verdict counts only with a clean exit, as for otpgate.
		if werr != nil && res.verdict == "accepted" {
			res.verdict = "none"
		}
		res.accepted = res.verdict == "accepted"
		res.out = fmt.Sprintf("verdict %q, %v; %s", cv.v, cv.err, out.String())
	} else {
		res.out = out.String()
		res.accepted = werr == nil
		switch {
		case res.accepted:
			res.verdict = "accepted"
		case c.fd[1] != "" || c.fd[2] != "":
			res.verdict = "denied"
		case strings.Contains(res.out, "Authentication failure"):
			res.verdict = "auth-err"
		case strings.Contains(res.out, "maximum number of retries"):
			res.verdict = "max-tries"
		default:
			res.verdict = "none"
		}
	}
	if res.ended == "" {
		if ee, ok := werr.(*exec.ExitError); ok {
			res.ended = ee.ProcessState.String()
		} else if werr != nil {
			res.ended = werr.Error()
		} else {
			res.ended = "exit status 0"
		}
	}
	return res, errors.Join(errs...)
}

// stallUI is a client that never answers, until released.
type stallUI struct{ release chan struct{} }

func (u stallUI) Prompt(string, bool) (string, error) {
	<-u.release
	return "", errors.New("released")
}
func (stallUI) Message(string, bool)   {}
func (stallUI) Data(helper.Data) error { return nil }

// answerFile is a read-only file that holds answer.
func (k *hostileKit) answerFile(answer string) (*os.File, error) {
	f, err := os.CreateTemp(k.dir, "answer-")
	if err != nil {
		return nil, err
	}
	name := f.Name()
	f.WriteString(answer + "\n")
	f.Close()
	os.Chmod(name, 0o644)
	defer os.Remove(name)
	return os.Open(name)
}

// readHState is user's state, to compare before and after an attempt.
func readHState(t *testing.T, store *keystore.Store, user string) keystore.State {
	t.Helper()
	st, err := store.ReadState(user)
	if err != nil {
		t.Fatalf("state of %s: %v", user, err)
	}
	return st
}

func sameState(a, b keystore.State) bool {
	return a.Failures == b.Failures && a.LastStep(keystore.DefaultLabel) == b.LastStep(keystore.DefaultLabel) && a.LockedUntil.Equal(b.LockedUntil) &&
		a.LastSuccess.Equal(b.LastSuccess) && a.LastFailure.Equal(b.LastFailure)
}

func lockedAt(st keystore.State, now time.Time) bool { return st.LockedUntil.After(now) }

// ledger checks the invariants attempt by attempt for one account.
type ledger struct {
	t        *testing.T
	r        *hroute
	user     string
	secret   []byte
	accepted map[string]bool // codes accepted since the last reset
	// per condition: a right code accepted, a wrong code not counted
	acceptedUnder, uncountedUnder map[string]string
}

func newLedger(t *testing.T, r *hroute, user string, secret []byte) *ledger {
	return &ledger{t: t, r: r, user: user, secret: secret, accepted: map[string]bool{},
		acceptedUnder: map[string]string{}, uncountedUnder: map[string]string{}}
}

// reset is the administrator's unlock: a fresh state, so that codes can
// be accepted again.
func (l *ledger) reset() {
	l.t.Helper()
	lk, err := l.r.store.Lock(l.user, 5*time.Second)
	if err != nil {
		l.t.Fatal(err)
	}
	defer lk.Unlock()
	if err := lk.WriteState(keystore.State{}); err != nil {
		l.t.Fatal(err)
	}
	clear(l.accepted)
}

// try runs one attempt and checks it against the state before and after:
// a wrong code never accepted and counted once (or the account locked),
// or else nothing written; a code accepted only once, never while locked,
// and recorded. right says whether answer is a code that would be
// accepted (unused, in the window) but for the lock.
func (l *ledger) try(k *hostileKit, c hcond, answer string, right bool, during func(int)) (hres, keystore.State) {
	t := l.t
	t.Helper()
	before := readHState(t, l.r.store, l.user)
	start := time.Now()
	res := k.attempt(t, l.r, c, l.user, answer, during)
	after := readHState(t, l.r.store, l.user)
	what := fmt.Sprintf("%v, %s, %s code %s: %s (%s), failures %d -> %d, locked %v -> %v",
		l.r, c.name, map[bool]string{true: "right", false: "wrong"}[right], answer, res.verdict, res.ended,
		before.Failures, after.Failures, lockedAt(before, start), lockedAt(after, time.Now()))
	if c.noCode {
		right = false // the host passes on something else
	}
	switch {
	case res.accepted && !right:
		t.Errorf("%s: a wrong code was accepted\n%s", what, res.out)
	case res.accepted && lockedAt(before, start):
		t.Errorf("%s: accepted while locked\n%s", what, res.out)
	case res.accepted && l.accepted[answer]:
		t.Errorf("%s: an accepted code was accepted again\n%s", what, res.out)
	case res.accepted && (after.LastStep(keystore.DefaultLabel) <= before.LastStep(keystore.DefaultLabel) || after.Failures != 0):
		t.Errorf("%s: accepted without recording it (last step %d -> %d)", what, before.LastStep(keystore.DefaultLabel), after.LastStep(keystore.DefaultLabel))
	case res.accepted:
		l.accepted[answer] = true
		l.acceptedUnder[c.name] = what
	case right && after.LastStep(keystore.DefaultLabel) > before.LastStep(keystore.DefaultLabel):
		// Used up by the helper, the host never heard: no longer usable.
		l.accepted[answer] = true
	}
	if !right {
		counted := after.Failures == before.Failures+1 || lockedAt(after, time.Now()) && after.Failures >= before.Failures
		if !counted && !lockedAt(before, start) {
			if after.Failures != before.Failures || after.LastStep(keystore.DefaultLabel) != before.LastStep(keystore.DefaultLabel) {
				t.Errorf("%s: the state changed without counting\n%s", what, res.out)
			}
			l.uncountedUnder[c.name] = what
		}
	}
	if c.blocked(l.r.kind) && !sameState(before, after) && !c.noCode {
		t.Errorf("%s: this condition should make the attempt impossible, yet the state changed\n%s", what, res.out)
	}
	if c.blocked(l.r.kind) && res.accepted {
		t.Errorf("%s: accepted under a condition that should make the attempt impossible", what)
	}
	if testing.Verbose() {
		t.Log(what)
	}
	return res, after
}

// extraGuesses fails t for a condition under which a right code was
// accepted and a wrong one was not counted: the attacker would learn
// codes without the lockout.
func (l *ledger) extraGuesses() {
	for name, acc := range l.acceptedUnder {
		if un, ok := l.uncountedUnder[name]; ok {
			l.t.Errorf("an extra guess under %q: a wrong code was not counted (%s) while a right one was accepted (%s)", name, un, acc)
		}
	}
}

// sequence is the attack under one condition: the right code, the same
// code again, max_failures wrong codes, the next right code. A condition
// works (accepted, the replay refused, every wrong code counted, locked,
// the next code refused) or blocks every attempt (all denied, nothing
// written); never a mix.
func (l *ledger) sequence(k *hostileKit, c hcond) {
	t := l.t
	t.Helper()
	now := code(t, l.secret, 0)
	first, firstState := l.try(k, c, now, true, nil)
	if c.stall {
		// Each attempt waits until the attacker gives up: one with a
		// wrong code, then a clean one for the same user.
		l.try(k, c, wrongCode(t, l.secret), false, nil)
		l.lockFree(k)
		if first.accepted {
			t.Errorf("%v, %s: accepted without an answer", l.r, c.name)
		}
		return
	}
	l.try(k, c, now, false, nil) // a replay is a wrong code
	wrong := wrongCode(t, l.secret)
	var after keystore.State
	for i := 0; i < hostileMaxFailures; i++ {
		_, after = l.try(k, c, wrong, false, nil)
	}
	next := code(t, l.secret, 1)
	last, _ := l.try(k, c, next, true, nil)
	works := first.accepted || strings.IndexByte(c.unseen, l.r.kind) >= 0 && firstState.LastStep(keystore.DefaultLabel) != 0
	switch {
	case c.either != "" && strings.IndexByte(c.either, l.r.kind) >= 0:
	case c.blocked(l.r.kind) && works:
		t.Errorf("%v, %s: expected to be impossible, but the right code was accepted", l.r, c.name)
	case !c.blocked(l.r.kind) && !works:
		t.Errorf("%v, %s: expected to work, but the right code was refused: %s\n%s", l.r, c.name, first.ended, first.out)
	}
	if works && (after.Failures < hostileMaxFailures || !lockedAt(after, time.Now())) {
		t.Errorf("%v, %s: after %d wrong codes: failures %d, locked until %v; want locked", l.r, c.name, hostileMaxFailures, after.Failures, after.LockedUntil)
	}
	if last.accepted {
		t.Errorf("%v, %s: the right code was accepted after %d wrong ones", l.r, c.name, hostileMaxFailures)
	}
}

// lockFree: a clean attempt for the same user, from a clean process,
// completes within two seconds of the attacker's process being gone.
func (l *ledger) lockFree(k *hostileKit) {
	t := l.t
	t.Helper()
	start := time.Now()
	res, _ := l.try(k, hcond{name: "clean, after the attacker's process was stopped"}, wrongCode(t, l.secret), false, nil)
	if d := time.Since(start); d > 2*time.Second || res.verdict != "auth-err" && res.verdict != "max-tries" {
		t.Errorf("%v: a clean attempt after the attacker's process stopped took %v and gave %s (%s)\n%s", l.r, d, res.verdict, res.ended, res.out)
	}
}

// hostileRoutes sets up the three routes: A with its own store, B and C
// sharing the self-mode store of nobody's account.
func hostileRoutes(t *testing.T) (a func(user string) (*hroute, []byte), storeA *keystore.Store, b, c *hroute, selfSecret []byte) {
	t.Helper()
	s := newStack(t, hostileConfig)
	host := setuidHost(t)
	svcA := s.etcService(s.otpgate("required", "timeout=10"))
	a = func(user string) (*hroute, []byte) {
		secret, _ := s.enroll(user)
		return &hroute{kind: 'A', store: s.store, host: host, svc: svcA, helper: s.helper}, secret
	}
	x := newSelfStack(t, hostileConfig)
	me := nobodyName(t)
	selfSecret = (&stackAccount{store: x.store}).enroll(t, me)
	sb := &stack{t: t, store: x.store, helper: x.helper, config: "/nonexistent/ignored-in-self-mode.toml"}
	pt, _ := exec.LookPath("pamtester")
	b = &hroute{kind: 'B', store: x.store, host: pt, svc: sb.etcService(sb.otpgate("required", "timeout=10")), user: me, helper: x.helper}
	c = &hroute{kind: 'C', store: x.store, launcher: x.launcher, user: me, helper: x.helper}
	return a, s.store, b, c, selfSecret
}

// TestHostileConditions applies every condition of hostileConditions in
// turn, on each route, to the process the attacker starts, and runs the
// whole attack under it (sequence): never an extra guess, never a code
// accepted twice, never a right code after max_failures wrong ones, and
// where the condition makes the attempt impossible, every attempt denied
// with nothing written. Then nothing was written outside the store, root
// loaded no library and ran no program of the user's, and opened neither
// the TZ FIFO nor the file named in TZ and LC_ALL.
func TestHostileConditions(t *testing.T) {
	k := newHostileKit(t)
	routeA, storeA, b, c, selfSecret := hostileRoutes(t)
	conds := hostileConditions(k)
	t.Run("A", func(t *testing.T) {
		for i, cond := range conds {
			t.Run(cond.name, func(t *testing.T) {
				t.Parallel()
				user := fmt.Sprintf("hx%d", i)
				r, secret := routeA(user)
				r.user = user
				l := newLedger(t, r, user, secret)
				l.sequence(k, cond)
				l.extraGuesses()
			})
		}
	})
	for _, r := range []*hroute{b, c} {
		t.Run(string(r.kind), func(t *testing.T) {
			for _, cond := range conds {
				t.Run(cond.name, func(t *testing.T) {
					l := newLedger(t, r, r.user, selfSecret)
					l.reset()
					l.sequence(k, cond)
					l.extraGuesses()
				})
			}
		})
	}
	own := k.check(t)
	checkHostileStore(t, storeA)
	if k.preloadTried.Load() && !containsPrefix(own, "preload-uid65534-euid65534-") {
		t.Errorf("the LD_PRELOAD library left no marker even in nobody's own processes (%q): the check proves nothing", own)
	}
	checkHostileStore(t, b.store)
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// hostileSignals are the signals a user sends to the host they started:
// the terminal's and job control's, and SIGKILL.
var hostileSignals = []syscall.Signal{syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGINT,
	syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGSTOP, syscall.SIGCONT, syscall.SIGKILL}

// signaller sends, as the user, a few signals at random moments to the
// host's process group, and SIGCONT at the end so that a stopped host
// finishes; it also tries to stop the helper directly, which the user
// may not. It records whether the helper ever could be signalled.
type signaller struct {
	k        *hostileKit
	rng      *rand.Rand
	helper   string
	n        int
	reached  atomic.Int32 // the helper was found and refused the signal
	signaled atomic.Int32 // the user could signal the helper: a failure
	inGroup  atomic.Int32 // the helper was in the host's process group: a failure
}

func (s *signaller) during(pgid int) {
	for i := 0; i < s.n; i++ {
		time.Sleep(time.Duration(s.rng.IntN(40_000)) * time.Microsecond)
		if pid := findChild(pgid, s.helper); pid != 0 {
			// Out of the host's process group, nothing typed at the
			// user's terminal (Ctrl-Z, Ctrl-C) reaches the helper.
			if _, pgrp, _, ok := procStat(pid); ok && pgrp == pgid {
				s.inGroup.Add(1)
			}
			switch s.k.kill(syscall.SIGSTOP, pid) {
			case syscall.EPERM:
				s.reached.Add(1)
			case 0:
				s.signaled.Add(1)
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		sig := hostileSignals[s.rng.IntN(len(hostileSignals))]
		if sig == syscall.SIGKILL && s.rng.IntN(3) != 0 {
			sig = syscall.SIGTSTP
		}
		s.k.kill(sig, -pgid)
		if sig == syscall.SIGSTOP || sig == syscall.SIGTSTP || sig == syscall.SIGTTIN || sig == syscall.SIGTTOU {
			time.Sleep(time.Duration(s.rng.IntN(30_000)) * time.Microsecond)
		}
	}
	s.k.kill(syscall.SIGCONT, -pgid)
}

// findChild returns the pid of a descendant of pid whose executable is
// exe (the helper: the module's child, or the launcher after its exec),
// or 0.
func findChild(pid int, exe string) int {
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		if p == pid {
			if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); link == exe {
				return p
			}
		}
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, c := range strings.Fields(string(b)) {
				n, _ := strconv.Atoi(c)
				if link, _ := os.Readlink("/proc/" + c + "/exe"); link == exe {
					return n
				}
				todo = append(todo, n)
			}
		}
	}
	return 0
}

// waitHelpersGone waits until no orphaned process runs exe (one whose
// parent is not this test process, such as a helper whose host was
// killed; a daemon a test started is its child), for at most max.
func waitHelpersGone(t *testing.T, exe string, max time.Duration) {
	t.Helper()
	me := os.Getpid()
	for deadline := time.Now().Add(max); ; {
		running := false
		procs, _ := filepath.Glob("/proc/[0-9]*/exe")
		for _, p := range procs {
			if link, _ := os.Readlink(p); link != exe {
				continue
			}
			b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
			if err != nil {
				continue // gone meanwhile
			}
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
			if len(f) > 1 && f[1] != strconv.Itoa(me) {
				running = true
				break
			}
		}
		if !running {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("a helper (%s) still runs %v after its host was killed", exe, max)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHostileSignals sends every terminal and job-control signal, SIGSTOP,
// SIGCONT and SIGKILL, at random moments to the process group of the host
// the user started, on each route, while attempts run with right and
// wrong codes: a verdict the attacker saw always came with its count, no
// code was accepted twice or after the lock, and the user could never
// signal the helper. Then the host is stopped for good at its prompt and
// killed: a clean attempt for the same user completes within two seconds
// each time.
func TestHostileSignals(t *testing.T) {
	k := newHostileKit(t)
	routeA, _, b, c, selfSecret := hostileRoutes(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	ra, secretA := routeA("hxsig")
	ra.user = "hxsig"
	for _, x := range []struct {
		r      *hroute
		secret []byte
	}{{ra, secretA}, {b, selfSecret}, {c, selfSecret}} {
		t.Run(string(x.r.kind), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, uint64(x.r.kind)))
			l := newLedger(t, x.r, x.r.user, x.secret)
			l.reset()
			sig := &signaller{k: k, rng: rng, helper: x.r.helper, n: 3}
			ended := 0
			// 16 attempts, and more (up to 64) until a random signal has
			// ended the host at least once and the helper was caught
			// running: both depend on timing, and an attack that never
			// landed proves little.
			attempts := 0
			for i := 0; i < 16 || ((ended == 0 || sig.reached.Load() == 0) && i < 64); i++ {
				attempts++
				st := readHState(t, x.r.store, x.r.user)
				if lockedAt(st, time.Now()) && rng.IntN(2) == 0 {
					l.reset()
					st = keystore.State{}
				}
				right := rng.IntN(3) == 0
				answer := wrongCode(t, x.secret)
				if right {
					answer = code(t, x.secret, 0)
					if l.accepted[answer] {
						answer = code(t, x.secret, 1)
					}
					right = !l.accepted[answer]
				}
				// core=0: SIGQUIT would leave the attacker's own core
				// file in their working directory.
				res, _ := l.try(k, hcond{name: "signals", wrap: []string{"-r", "core=0"}}, answer, right, sig.during)
				l.strict(res, st, right)
				if strings.HasPrefix(res.ended, "signal: ") {
					ended++
				}
				// The helper outlives a host killed after the answer
				// (its own session) and writes its verdict late, by
				// design; the next attempt's before and after must not
				// straddle that write.
				waitHelpersGone(t, x.r.helper, 10*time.Second)
			}
			// Stopped for good at the prompt (route C: the client never
			// answers), or killed there: meanwhile a clean attempt for
			// the same user completes within two seconds, and again
			// once the attacker's process is gone.
			for _, how := range []syscall.Signal{syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGKILL} {
				l.reset()
				stuck := hcond{name: "host stopped at the prompt (" + how.String() + ")", stall: true, stallFor: 1200 * time.Millisecond}
				if x.r.kind != 'C' {
					stuck.fd[0] = "pipe-unread"
				}
				var clean hres
				var cleanErr error
				var took time.Duration
				l.try(k, stuck, "", false, func(pgid int) {
					time.Sleep(300 * time.Millisecond)
					k.kill(how, -pgid)
					time.Sleep(50 * time.Millisecond)
					start := time.Now()
					clean, cleanErr = k.run(x.r, hcond{name: "clean"}, x.r.user, wrongCode(t, x.secret), nil)
					took = time.Since(start)
				})
				if cleanErr != nil || took > 2*time.Second || clean.verdict != "auth-err" && clean.verdict != "max-tries" {
					t.Errorf("%v: a clean attempt while the attacker's host was %s took %v and gave %s (%s), %v\n%s", x.r, how, took, clean.verdict, clean.ended, cleanErr, clean.out)
				}
				l.lockFree(k)
			}
			if ended == 0 {
				t.Errorf("%v: no signal ended the host in %d attempts: the test proves little", x.r, attempts)
			}
			if sig.reached.Load() == 0 {
				t.Errorf("%v: the helper was never found among the host's processes: the test of signalling it proves nothing", x.r)
			}
			if n := sig.signaled.Load(); n != 0 {
				t.Errorf("%v: the user could signal the helper %d times", x.r, n)
			}
			if n := sig.inGroup.Load(); n != 0 {
				t.Errorf("%v: the helper was in the host's process group %d times: the user's terminal could stop it", x.r, n)
			}
		})
	}
	k.check(t)
	checkHostileStore(t, ra.store)
	checkHostileStore(t, b.store)
}

// strict: a verdict about the code that the attacker saw (auth-err or
// max-tries) came with a counted failure, unless the account was locked.
func (l *ledger) strict(res hres, before keystore.State, right bool) {
	l.t.Helper()
	if right || res.verdict != "auth-err" && res.verdict != "max-tries" || lockedAt(before, time.Now()) {
		return
	}
	after := readHState(l.t, l.r.store, l.user)
	if after.Failures != before.Failures+1 && !(lockedAt(after, time.Now()) && after.Failures >= before.Failures) {
		l.t.Errorf("%v: a wrong code got a verdict (%s, %s) without a count: failures %d -> %d\n%s", l.r, res.verdict, res.ended, before.Failures, after.Failures, res.out)
	}
}

// TestHostileMixed runs about a hundred attempts, each on a random route
// under a random combination of conditions, some with signals at random
// moments, with right, replayed and wrong codes: the same invariants as
// TestHostileConditions, attempt by attempt.
func TestHostileMixed(t *testing.T) {
	k := newHostileKit(t)
	routeA, _, b, c, selfSecret := hostileRoutes(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	ra, secretA := routeA("hxmix")
	ra.user = "hxmix"
	ledgers := map[byte]*ledger{'A': newLedger(t, ra, ra.user, secretA), 'B': newLedger(t, b, b.user, selfSecret)}
	ledgers['C'] = ledgers['B']
	ledgers['A'].reset()
	ledgers['B'].reset()
	routes := []*hroute{ra, b, c}
	var pool []hcond
	for _, cond := range hostileConditions(k) {
		if !cond.stall {
			pool = append(pool, cond)
		}
	}
	sig := &signaller{k: k, rng: rng, n: 2}
	counts := map[string]int{}
	for i := 0; i < 100; i++ {
		r := routes[rng.IntN(len(routes))]
		l := ledgers[r.kind]
		l.r = r
		var combo hcond
		var names []string
		set := map[string]bool{} // the limits and fds the combination sets
		for j := 0; j <= rng.IntN(3); j++ {
			x := pool[rng.IntN(len(pool))]
			// A part that sets a limit or an fd set already would undo
			// the earlier part (the last -r, the last fd wins) while the
			// earlier part's blocks stayed: leave it out.
			if x.overlaps(set) {
				continue
			}
			names = append(names, x.name)
			combo.wrap = append(combo.wrap, x.wrap...)
			combo.env = append(combo.env, x.env...)
			for fd, kind := range x.fd {
				if kind != "" {
					combo.fd[fd] = kind
				}
			}
			combo.blocks += x.blocks
			combo.noCode = combo.noCode || x.noCode
			combo.either += x.either
			combo.unseen += x.unseen
			combo.leader = combo.leader || x.leader
		}
		var during func(int)
		if rng.IntN(3) == 0 {
			sig.helper = r.helper
			during = sig.during
			names = append(names, "signals")
			// SIGQUIT would leave the attacker's own core file in
			// their working directory, which must stay empty.
			combo.wrap = append([]string{"-r", "core=0"}, combo.wrap...)
		}
		combo.name = strings.Join(names, " + ")
		if strings.IndexByte(combo.either, r.kind) >= 0 {
			// Works or not, by the machine's count of nobody's
			// processes: never accepted without a count, checked
			// attempt by attempt.
			combo.blocks = strings.ReplaceAll(combo.blocks, string(r.kind), "")
		}
		st := readHState(t, r.store, l.user)
		if lockedAt(st, time.Now()) && rng.IntN(3) == 0 {
			l.reset()
			st = keystore.State{}
		}
		right := rng.IntN(3) == 0
		answer := wrongCode(t, l.secret)
		switch {
		case right:
			answer = code(t, l.secret, 0)
			if l.accepted[answer] {
				answer = code(t, l.secret, 1)
			}
			right = !l.accepted[answer]
		case rng.IntN(4) == 0 && len(l.accepted) > 0:
			for a := range l.accepted {
				answer = a // a replay
			}
		}
		res, _ := l.try(k, combo, answer, right, during)
		counts[res.verdict]++
		if during != nil {
			waitHelpersGone(t, r.helper, 10*time.Second) // as in TestHostileSignals
		}
		// Where every part of the combination works and no signal
		// could end the host, the attacker sees a verdict, and it
		// was counted.
		if !combo.noCode && during == nil && !combo.blocked(r.kind) && strings.IndexByte(combo.either, r.kind) < 0 {
			l.strict(res, st, right)
			if right && !res.accepted && !lockedAt(st, time.Now()) && strings.IndexByte(combo.unseen, r.kind) < 0 {
				t.Errorf("%v, %s: a right code was refused: %s (%s)\n%s", r, combo.name, res.verdict, res.ended, res.out)
			}
		}
	}
	t.Logf("verdicts: %v", counts)
	k.check(t)
	checkHostileStore(t, ra.store)
	checkHostileStore(t, b.store)
}
