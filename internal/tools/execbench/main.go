// Command execbench measures what a login costs through exec, the way the
// PAM module runs the helper (a socketpair on its standard input and
// output, one request, one answer), for the files-only otpgate-helper and
// for otpgate-helper-pg (the same helper with the PostgreSQL driver
// linked in, built with -tags postgres), interleaved so that the load of
// the machine falls on both alike:
//
//   - start-up: otpgate-helper --version, the process and the packages'
//     initialisation and nothing else;
//   - files: one wrong code for a user of a files store (config, lock,
//     TOTP window, one durable write), the whole exec path;
//   - postgres: one wrong code for a user in a throwaway database
//     (internal/pgtest), through otpgate-helper (which hands the login to
//     otpgate-helper-pg) and through otpgate-helper-pg directly.
//
// It prints medians and means per case, and the ratios that decide
// whether the driver may be linked into otpgate-helper (docs/PERFORMANCE.md).
// Run as root (the helper runs as root; the cluster as postgres):
//
//	go run ./internal/tools/execbench [-n 300]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

func main() {
	n := flag.Int("n", 300, "runs of each case")
	pg := flag.Bool("postgres", true, "also the postgres cases (needs PostgreSQL's initdb)")
	flag.StringVar(&storeParent, "store-in", "", "make the files store in this directory (such as /dev/shm, a tmpfs) instead of the temporary one")
	flag.Parse()
	if err := run(*n, *pg); err != nil {
		fmt.Fprintln(os.Stderr, "execbench:", err)
		os.Exit(1)
	}
}

// storeParent is where the files store is made; "" is the run's
// temporary directory.
var storeParent string

type sample struct {
	name string
	d    []time.Duration
}

func (s *sample) add(d time.Duration) { s.d = append(s.d, d) }

func (s *sample) median() time.Duration {
	d := slices.Clone(s.d)
	slices.Sort(d)
	return d[len(d)/2]
}

func (s *sample) mean() time.Duration {
	var t time.Duration
	for _, d := range s.d {
		t += d
	}
	return t / time.Duration(len(s.d))
}

func run(n int, withPG bool) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the helper serves root's requests only as root")
	}
	dir, err := os.MkdirTemp("", "otpgate-execbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	lean, pgHelper := filepath.Join(dir, "otpgate-helper"), filepath.Join(dir, "otpgate-helper-pg")
	for _, b := range [][]string{{"-o", lean}, {"-tags", "postgres", "-o", pgHelper}} {
		cmd := exec.Command("go", append(append([]string{"build", "-trimpath", "-ldflags=-s -w"}, b...), "./cmd/otpgate-helper")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %v\n%s", b, err, out)
		}
	}
	for _, b := range []string{lean, pgHelper} {
		st, _ := os.Stat(b)
		fmt.Printf("%s: %.1f MiB\n", filepath.Base(b), float64(st.Size())/(1<<20))
	}

	// A files store with one user, max_failures high, cleared as it fills.
	store := filepath.Join(dir, "store")
	if storeParent != "" {
		sd, err := os.MkdirTemp(storeParent, "otpgate-execbench-store-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(sd)
		store = filepath.Join(sd, "store")
	}
	os.Mkdir(store, 0o700)
	filesCfg := filepath.Join(dir, "files.toml")
	os.WriteFile(filesCfg, []byte(fmt.Sprintf("store = %q\n[lockout]\nmax_failures = 100\n", store)), 0o644)
	cfg, err := config.Load(filesCfg)
	if err != nil {
		return err
	}
	mgr := &account.Manager{Store: keystore.New(store), Config: cfg}
	en, err := mgr.NewEnrollment("bench")
	if err != nil {
		return err
	}
	if _, err := mgr.Save(en, account.SaveOptions{}); err != nil {
		return err
	}
	wrong := wrongCode(en.Secret)

	cases := []struct {
		s    *sample
		bin  string
		args []string
		req  *protocol.Request
	}{
		{&sample{name: "start-up, otpgate-helper"}, lean, []string{"--version"}, nil},
		{&sample{name: "start-up, otpgate-helper-pg"}, pgHelper, []string{"--version"}, nil},
		{&sample{name: "files attempt, otpgate-helper"}, lean, nil, &protocol.Request{Op: protocol.OpAuthenticate, User: "bench", Service: "execbench", Args: []string{"config=" + filesCfg}}},
		{&sample{name: "files attempt, otpgate-helper-pg"}, pgHelper, nil, &protocol.Request{Op: protocol.OpAuthenticate, User: "bench", Service: "execbench", Args: []string{"config=" + filesCfg}}},
	}
	var resetPG func() error
	if withPG {
		c, err := pgtest.Start()
		if err != nil {
			return err
		}
		defer c.Remove()
		pgCfg, err := pgSetup(c, dir, en.Secret)
		if err != nil {
			return err
		}
		super, err := pgx.Connect(context.Background(), c.DSN("postgres", "bench"))
		if err != nil {
			return err
		}
		defer super.Close(context.Background())
		resetPG = func() error {
			_, err := super.Exec(context.Background(), "UPDATE otpgate.user_state SET failures = 0, locked_until = NULL")
			return err
		}
		req := &protocol.Request{Op: protocol.OpAuthenticate, User: "bench", Service: "execbench", Args: []string{"config=" + pgCfg}}
		cases = append(cases,
			struct {
				s    *sample
				bin  string
				args []string
				req  *protocol.Request
			}{&sample{name: "postgres attempt, otpgate-helper (hands over)"}, lean, nil, req},
			struct {
				s    *sample
				bin  string
				args []string
				req  *protocol.Request
			}{&sample{name: "postgres attempt, otpgate-helper-pg"}, pgHelper, nil, req})
	}
	// Warm up the page cache and the store.
	for _, c := range cases {
		if _, err := once(c.bin, c.args, c.req, wrong); err != nil {
			return fmt.Errorf("%s: %w", c.s.name, err)
		}
	}
	for i := 0; i < n; i++ {
		if i%40 == 0 {
			if err := mgr.Unlock("bench"); err != nil {
				return err
			}
			if resetPG != nil {
				if err := resetPG(); err != nil {
					return err
				}
			}
		}
		for _, c := range cases {
			d, err := once(c.bin, c.args, c.req, wrong)
			if err != nil {
				return fmt.Errorf("%s: %w", c.s.name, err)
			}
			c.s.add(d)
		}
	}
	fmt.Printf("\n%d runs each, interleaved\n\n| case | median | mean |\n|---|---|---|\n", n)
	for _, c := range cases {
		fmt.Printf("| %s | %.2f ms | %.2f ms |\n", c.s.name, ms(c.s.median()), ms(c.s.mean()))
	}
	ratio := func(a, b int) float64 { return float64(cases[a].s.median()) / float64(cases[b].s.median()) }
	fmt.Printf("\nlinking the driver: start-up ×%.3f, a files attempt through exec ×%.3f (medians)\n", ratio(1, 0), ratio(3, 2))
	if withPG {
		fmt.Printf("the hand-over: a postgres attempt through otpgate-helper ×%.3f of otpgate-helper-pg directly\n", ratio(4, 5))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// once runs bin once: with req, as the PAM module does, answering the
// prompt with code; without, just bin args (start-up).
func once(bin string, args []string, req *protocol.Request, code string) (time.Duration, error) {
	start := time.Now()
	if req == nil {
		cmd := exec.Command(bin, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %s", err, out)
		}
		return time.Since(start), nil
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	cmd := exec.Command(bin)
	cmd.Stdin, cmd.Stdout = theirs, theirs
	cmd.Env = []string{}
	if err := cmd.Start(); err != nil {
		theirs.Close()
		return 0, err
	}
	theirs.Close()
	c, err := helper.SocketFile(int(mine.Fd()), "helper")
	if err != nil {
		return 0, err
	}
	v, err := helper.Converse(c, *req, answer(code), 30*time.Second)
	werr := cmd.Wait()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if v != protocol.ResultAuthErr || werr != nil {
		return 0, fmt.Errorf("verdict %s (%v), want the denial of a wrong code", v, werr)
	}
	return d, nil
}

type answer string

func (a answer) Prompt(string, bool) (string, error) { return string(a), nil }
func (answer) Message(string, bool)                  {}
func (answer) Data(helper.Data) error                { return fmt.Errorf("unexpected data frame") }

func wrongCode(secret []byte) string {
	var near []string
	step := totp.Step(time.Now(), 30)
	for d := int64(-3); d <= 3+2000; d++ { // the run may last a while
		c, _ := totp.CodeAt(secret, uint64(step+d), totp.Default)
		near = append(near, c)
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*7919+100003)%1000000)
		if !slices.Contains(near, c) {
			return c
		}
	}
}

// pgSetup makes the database, a host role and the user bench (with the
// same secret), a policy of 100 failures, and a config for it.
func pgSetup(c *pgtest.Cluster, dir string, secret []byte) (string, error) {
	ctx := context.Background()
	super, err := pgx.Connect(ctx, c.DSN("postgres", "postgres"))
	if err != nil {
		return "", err
	}
	defer super.Close(ctx)
	for _, q := range []string{"CREATE DATABASE bench", "CREATE ROLE bench_host LOGIN"} {
		if _, err := super.Exec(ctx, q); err != nil {
			return "", err
		}
	}
	if err := pgstore.Init(ctx, c.DSN("postgres", "bench")); err != nil {
		return "", err
	}
	if _, err := super.Exec(ctx, "GRANT "+pgstore.HostRole+" TO bench_host"); err != nil {
		return "", err
	}
	a, err := pgstore.OpenAdmin(ctx, c.DSN("postgres", "bench"))
	if err != nil {
		return "", err
	}
	defer a.Close(ctx)
	// Failures are cleared every 40 runs: the lock is never reached.
	if err := a.SetPolicy(ctx, pgstore.Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		return "", err
	}
	if err := a.Enroll(ctx, "bench", pgstore.Authenticator{Label: "default", Secret: secret, Params: totp.Default}); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "postgres.toml")
	text := fmt.Sprintf("store = %q\nbackend = \"postgres\"\n[postgres]\ndsn = %q\n", filepath.Join(dir, "store"), c.DSN("bench_host", "bench"))
	return path, os.WriteFile(path, []byte(strings.TrimSpace(text)+"\n"), 0o644)
}
