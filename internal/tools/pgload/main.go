// Command pgload measures the daemon against the PostgreSQL backend next
// to the files backend: it builds otpgate-helper and otpgate-helper-pg,
// starts a throwaway cluster (internal/pgtest) with the otpgate schema
// and a host role, enrolls the same users with the same secrets in a
// files store and in the database, starts one daemon (otpgate-helper-pg
// --listen, what otpgate-helper becomes on a postgres host), and runs
// internal/tools/daemonload against it: one user and -users users, with
// -clients connections at once, for each backend. It prints a markdown
// table for docs/PERFORMANCE.md. Run as root, from the module root:
//
//	go run ./internal/tools/pgload [-n 2000] [-clients 16] [-users 100]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/keystore"
)

func main() {
	n := flag.Int("n", 2000, "authentications per block")
	clients := flag.Int("clients", 16, "connections at once")
	users := flag.Int("users", 100, "users of the many-users blocks")
	flag.Parse()
	if err := run(*n, *clients, *users); err != nil {
		fmt.Fprintln(os.Stderr, "pgload:", err)
		os.Exit(1)
	}
}

func build(out string, args ...string) error {
	cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", out}, args...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %v: %v\n%s", args, err, b)
	}
	return nil
}

func run(n, clients, nUsers int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root")
	}
	dir, err := os.MkdirTemp("", "otpgate-pgload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	helperBin, load := filepath.Join(dir, "otpgate-helper"), filepath.Join(dir, "daemonload")
	for _, b := range [][]string{{helperBin, "./cmd/otpgate-helper"}, {filepath.Join(dir, "otpgate-helper-pg"), "-tags", "postgres", "./cmd/otpgate-helper"}, {load, "./internal/tools/daemonload"}} {
		if err := build(b[0], b[1:]...); err != nil {
			return err
		}
	}

	c, err := pgtest.Start()
	if err != nil {
		return err
	}
	defer c.Remove()
	ctx := context.Background()
	super, err := pgx.Connect(ctx, c.DSN("postgres", "postgres"))
	if err != nil {
		return err
	}
	for _, q := range []string{"CREATE DATABASE bench", "CREATE ROLE bench_host LOGIN"} {
		if _, err := super.Exec(ctx, q); err != nil {
			return err
		}
	}
	if err := pgstore.Init(ctx, c.DSN("postgres", "bench")); err != nil {
		return err
	}
	if _, err := super.Exec(ctx, "GRANT "+pgstore.HostRole+" TO bench_host"); err != nil {
		return err
	}
	super.Close(ctx)
	admin, err := pgstore.OpenAdmin(ctx, c.DSN("postgres", "bench"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if err := admin.SetPolicy(ctx, pgstore.Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		return err
	}

	store := filepath.Join(dir, "store")
	os.Mkdir(store, 0o700)
	filesCfg, pgCfg := filepath.Join(dir, "files.toml"), filepath.Join(dir, "postgres.toml")
	os.WriteFile(filesCfg, []byte(fmt.Sprintf("store = %q\nwindow = 1\n[lockout]\nmax_failures = 100\n", store)), 0o644)
	os.WriteFile(pgCfg, []byte(fmt.Sprintf("store = %q\nbackend = \"postgres\"\n[postgres]\ndsn = %q\n", store, c.DSN("bench_host", "bench"))), 0o644)
	cfg, err := config.Load(filesCfg)
	if err != nil {
		return err
	}
	mgr := &account.Manager{Store: keystore.New(store), Config: cfg}
	var names []string
	for i := range nUsers {
		name := fmt.Sprintf("bench%03d", i)
		en, err := mgr.NewEnrollment(name)
		if err != nil {
			return err
		}
		if _, err := mgr.Save(en, account.SaveOptions{}); err != nil {
			return err
		}
		if err := admin.Enroll(ctx, name, pgstore.Authenticator{Label: "default", Secret: en.Secret, Params: en.Params}); err != nil {
			return err
		}
		names = append(names, name)
	}
	one, many := filepath.Join(dir, "one"), filepath.Join(dir, "many")
	os.WriteFile(one, []byte(names[0]+"\n"), 0o644)
	os.WriteFile(many, []byte(strings.Join(names, "\n")+"\n"), 0o644)

	sockDir := filepath.Join(dir, "run")
	os.Mkdir(sockDir, 0o755)
	sock := filepath.Join(sockDir, "helper.sock")
	// otpgate-helper-pg serves both backends: what otpgate-helper becomes
	// at start on a host whose config says backend = "postgres".
	daemon := exec.Command(filepath.Join(dir, "otpgate-helper-pg"), "--listen", sock)
	var dlog bytes.Buffer
	daemon.Stdout, daemon.Stderr = &dlog, &dlog
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() { daemon.Process.Signal(os.Interrupt); daemon.Wait() }()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			return fmt.Errorf("the daemon did not listen: %s", dlog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	type block struct {
		backend, users, cfg string
		nUsers              int
	}
	blocks := []block{
		{"files", one, filesCfg, 1}, {"postgres", one, pgCfg, 1},
		{"files", many, filesCfg, nUsers}, {"postgres", many, pgCfg, nUsers},
	}
	fmt.Printf("| backend | users | clients | authentications | per second | p50 | p90 | p99 |\n|---|---|---|---|---|---|---|---|\n")
	for _, b := range blocks {
		args := []string{"-socket", sock, "-config", b.cfg, "-users", b.users, "-clients", fmt.Sprint(clients), "-n", fmt.Sprint(n), "-reset-every", "90"}
		if b.backend == "postgres" {
			args = append(args, "-admin-dsn", c.DSN("postgres", "bench"))
		}
		out, err := exec.Command(load, args...).Output()
		if err != nil {
			return fmt.Errorf("daemonload %v: %v: %s; the daemon's log: %s", args, err, out, tail(dlog.String()))
		}
		var r struct {
			N         int     `json:"n"`
			PerSecond float64 `json:"per_second"`
			P50NS     int64   `json:"p50_ns"`
			P90NS     int64   `json:"p90_ns"`
			P99NS     int64   `json:"p99_ns"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			return fmt.Errorf("daemonload printed %q: %v", out, err)
		}
		fmt.Printf("| %s | %d | %d | %d | %.0f | %.1f ms | %.1f ms | %.1f ms |\n", b.backend, b.nUsers, clients, r.N, r.PerSecond,
			float64(r.P50NS)/1e6, float64(r.P90NS)/1e6, float64(r.P99NS)/1e6)
	}
	if !strings.Contains(dlog.String(), "serving") {
		return fmt.Errorf("the daemon's log: %s", dlog.String())
	}
	return nil
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
