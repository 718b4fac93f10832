package e2e

// The PostgreSQL backend (docs/postgres.md) end to end: two "hosts", each
// with its own config.toml and store directory, against one database of a
// throwaway cluster (internal/pgtest). Host A answers through the daemon
// (otpgate-helper-pg --listen, what otpgate-helper turns itself into),
// host B through exec (the module execs the files-only otpgate-helper,
// which hands the login to otpgate-helper-pg): both paths of the login,
// and both see the same users, steps and lockout. The daemon's standard
// error has the log lines; an exec helper has no syslog here, so B is
// checked by its verdicts and the database's state.

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/totp"
)

var pgHelperOnce sync.Once

// needPGHelper builds otpgate-helper-pg (-tags postgres) next to the
// harness's otpgate-helper, where the files-only helper looks for it.
func needPGHelper(t testing.TB) *otpgateBins {
	t.Helper()
	b := needOtpgate(t)
	var err error
	pgHelperOnce.Do(func() {
		out := filepath.Join(b.dir, "otpgate-helper-pg")
		goTool, _ := lookTool("go")
		r := runCmd(buildTimeout, nil, func(ctx context.Context) *exec.Cmd {
			cmd := command(ctx, goTool, "build", "-trimpath", "-tags", "postgres", "-o", out, "./cmd/otpgate-helper")
			cmd.Dir = repoRoot(t)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			return cmd
		})
		if r.exit != 0 || r.timedOut {
			err = fmt.Errorf("building otpgate-helper-pg: %s", r)
			return
		}
		if err = os.Chown(out, 0, 0); err == nil {
			err = os.Chmod(out, 0o755)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(b.dir, "otpgate-helper-pg")) {
		t.Fatal("otpgate-helper-pg was not built")
	}
	return b
}

// pgDB is one test's database: the schema applied, an administrator and
// a host login role.
type pgDB struct {
	cluster *pgtest.Cluster
	name    string
	hostDSN string
	admin   *pgstore.Admin
}

func newPGDB(t testing.TB, c *pgtest.Cluster, maxFailures int) *pgDB {
	t.Helper()
	ctx := context.Background()
	db, role := c.NewDatabase(t)
	if err := pgstore.Init(ctx, c.DSN("postgres", db)); err != nil {
		t.Fatal(err)
	}
	c.Exec(t, "GRANT "+pgstore.HostRole+" TO "+role)
	a, err := pgstore.OpenAdmin(ctx, c.DSN("postgres", db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	if err := a.SetPolicy(ctx, pgstore.Policy{Window: 1, MaxFailures: maxFailures, LockDuration: 15 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	return &pgDB{cluster: c, name: db, hostDSN: c.DSN(role, db), admin: a}
}

// enroll makes a secret for u in the database (pgstore.Admin.Enroll, as
// otpgate enroll --dsn does) and returns it as an enrollment.
func (p *pgDB) enroll(t testing.TB, name string) enrollment {
	t.Helper()
	secret := make([]byte, 20)
	rand.Read(secret)
	if err := p.admin.Enroll(context.Background(), name, pgstore.Authenticator{Label: "default", Secret: secret,
		Params: totp.Params{Algorithm: "SHA1", Digits: 6, Period: 30}}); err != nil {
		t.Fatal(err)
	}
	return enrollment{User: name, Secret: totp.EncodeSecret(secret)}
}

// status is the user's state in the database, as a host sees it.
func (p *pgDB) status(t testing.TB, name string) pgstore.Status {
	t.Helper()
	cl, err := pgstore.Connect(context.Background(), p.hostDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	st, err := cl.Status(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *pgDB) wantStatus(t testing.TB, name string, failures int, locked bool) {
	t.Helper()
	st := p.status(t, name)
	if st.Failures != failures || time.Now().Before(st.LockedUntil) != locked {
		t.Errorf("database status of %s: failures=%d locked_until=%v, want failures=%d locked=%v", name, st.Failures, st.LockedUntil, failures, locked)
	}
}

// pgHost is one host's config.toml and store directory with backend =
// "postgres"; postgresKeys are more lines of its [postgres] table.
func pgHost(t testing.TB, b *otpgateBins, dsn string, postgresKeys ...string) *otpEnv {
	t.Helper()
	e := &otpEnv{bins: b}
	dir := t.TempDir()
	e.store = filepath.Join(dir, "store")
	if err := os.Mkdir(e.store, 0o700); err != nil {
		t.Fatal(err)
	}
	e.config = filepath.Join(dir, "config.toml")
	text := fmt.Sprintf("%sbackend = \"postgres\"\n\n[postgres]\ndsn = %q\n%s\n", strings.SplitN(configText(e.store, 5), "[lockout]", 2)[0],
		dsn, strings.Join(postgresKeys, "\n"))
	writeFile(t, e.config, text, 0o644)
	return e
}

// pgDaemon starts a daemon of its own for one host: otpgate-helper-pg
// --listen, what the files-only otpgate-helper becomes at start on a host
// whose config says backend = "postgres" (TestDaemonBackend in
// cmd/otpgate-helper tests that step).
func pgDaemon(t testing.TB, b *otpgateBins) *helperDaemon {
	t.Helper()
	requireTools(t, "setpriv")
	dir := t.TempDir()
	set := &daemonSet{module: b.module, helper: filepath.Join(b.dir, "otpgate-helper-pg"), socket: filepath.Join(dir, "helper.sock"),
		noHelper: filepath.Join(dir, "no-helper", "otpgate-helper")}
	d := startHelperDaemon(t, set)
	if !strings.Contains(d.logs.String(), "helper: serving") {
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// pamService writes a pamtester service of one auth line and returns a
// function that runs pamtester for user with code.
func pamService(t testing.TB, line string) func(user, code string) result {
	t.Helper()
	svc := "pamtester-" + prefix + randHex(3)
	writePAMService(t, svc, stack(line))
	return func(user, code string) result {
		return runDialog(loginTimeout, func(out string) (string, bool) {
			return code, strings.Contains(out, codePrompt)
		}, func(ctx context.Context) *exec.Cmd {
			return command(ctx, "pamtester", svc, user, "authenticate")
		})
	}
}

func pgCluster(t testing.TB) *pgtest.Cluster {
	t.Helper()
	requireRoot(t)
	return pgtest.Shared(t)
}

// TestPGTwoHosts: a user enrolled in the database logs in on host A
// (sshd, daemon); the same code on host B (sshd, exec) is a replay; wrong
// codes on A and B add up to one lockout, which B then enforces against
// the right code. The daemon's lines carry backend=postgres.
func TestPGTwoHosts(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	b := needPGHelper(t)
	db := newPGDB(t, pgCluster(t), 4)
	hostA, hostB := pgHost(t, b, db.hostDSN), pgHost(t, b, db.hostDSN)
	d := pgDaemon(t, b)
	u := newUser(t)
	en := db.enroll(t, u.name)
	c := newSSHClient(t, u)
	const methods = "publickey,keyboard-interactive"
	sshA := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(d.auth("required", hostA.config)), allowUsers: []string{u.name}})
	sshB := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(hostB.auth("required")), allowUsers: []string{u.name}})

	code := codeNow(t, en, 0)
	p := newAskpass(t, answers{code: code})
	wantLogin(t, "right code on A", c.login(sshA, methods, p, remoteCmd), u)
	wantPrompts(t, p, codePrompt)
	wantDenied(t, "the same code on B", c.login(sshB, methods, p, remoteCmd), u)
	wantPrompts(t, p, codePrompt)
	db.wantStatus(t, u.name, 1, false)
	d.wantAttempts(t, u, 1, "outcome=accepted", "method=totp", "backend=postgres", "service="+sshA.service)

	wrong := wrongCode(t, en)
	p.set(t, answers{code: wrong})
	wantDenied(t, "wrong code on A", c.login(sshA, methods, p, remoteCmd), u)
	wantDenied(t, "wrong code on B", c.login(sshB, methods, p, remoteCmd), u)
	db.wantStatus(t, u.name, 3, false)
	wantDenied(t, "wrong code on A, the fourth failure", c.login(sshA, methods, p, remoteCmd), u)
	db.wantStatus(t, u.name, 4, true)
	d.wantAttempts(t, u, 2, "outcome=denied", "reason=wrong-code", "backend=postgres")
	d.wantAttempts(t, u, 1, "outcome=denied", "reason=wrong-code", "failures=4", "backend=postgres")

	p.set(t, answers{code: codeNow(t, en, 1)})
	wantDenied(t, "the right code on B while locked", c.login(sshB, methods, p, remoteCmd), u)
	wantDenied(t, "the right code on A while locked", c.login(sshA, methods, p, remoteCmd), u)
	db.wantStatus(t, u.name, 4, true)
	d.wantAttempts(t, u, 1, "outcome=locked", "backend=postgres")

	// Not enrolled in the database: denied on both, without a prompt.
	v := newUser(t)
	run := pamService(t, hostB.auth("required"))
	if r := run(v.name, "123456"); r.exit == 0 || strings.Contains(r.stdout, pamtesterOK) || strings.Contains(r.stdout, codePrompt) {
		t.Errorf("a user the database does not know, on B: %s", r)
	}
	runA := pamService(t, d.auth("required", hostA.config))
	if r := runA(v.name, "123456"); r.exit == 0 || strings.Contains(r.stdout, codePrompt) {
		t.Errorf("a user the database does not know, on A: %s", r)
	}
	d.wantAttempts(t, v, 1, "outcome=denied", "reason=not-enrolled")
}

// TestPGParallelOneCode: 50 uses of one code at once, spread over both
// hosts and over sshd and pamtester, daemon and exec: exactly one is
// accepted.
func TestPGParallelOneCode(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen", "pamtester")
	b := needPGHelper(t)
	db := newPGDB(t, pgCluster(t), 100)
	hostA, hostB := pgHost(t, b, db.hostDSN), pgHost(t, b, db.hostDSN)
	d := pgDaemon(t, b)
	u := newUser(t)
	en := db.enroll(t, u.name)
	c := newSSHClient(t, u)
	const methods = "publickey,keyboard-interactive"
	sshA := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(d.auth("required", hostA.config)), allowUsers: []string{u.name}})
	sshB := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(hostB.auth("required")), allowUsers: []string{u.name}})
	pamA, pamB := pamService(t, d.auth("required", hostA.config)), pamService(t, hostB.auth("required"))
	code := codeNow(t, en, 0)
	p := newAskpass(t, answers{code: code})

	const n = 50
	results := make([]result, n)
	kinds := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		switch i % 4 {
		case 0:
			kinds[i] = "ssh A"
		case 1:
			kinds[i] = "ssh B"
		case 2:
			kinds[i] = "pamtester A"
		default:
			kinds[i] = "pamtester B"
		}
		wg.Go(func() {
			<-start
			switch i % 4 {
			case 0:
				results[i] = c.login(sshA, methods, p, remoteCmd)
			case 1:
				results[i] = c.login(sshB, methods, p, remoteCmd)
			case 2:
				results[i] = pamA(u.name, code)
			default:
				results[i] = pamB(u.name, code)
			}
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d parallel uses of one code took %v", n, time.Since(begin).Round(time.Millisecond))
	ok := 0
	// The uses that reached the code prompt: every one of them is either
	// the one accepted or a counted failure. (A use denied before its
	// prompt, such as a connection sshd or the daemon refused under the
	// load, guessed nothing and is not counted; it is logged here.)
	asked := strings.Count(p.prompts(t), strings.TrimSpace(codePrompt))
	for i, r := range results {
		mustNotHang(t, kinds[i], r)
		in := r.exit == 0 && (strings.Contains(r.stdout, marker(u)) || strings.Contains(r.stdout, pamtesterOK))
		if in {
			ok++
			t.Logf("accepted: %s", kinds[i])
		} else if r.exit != 1 && r.exit != 255 {
			t.Errorf("%s %d: neither in nor denied: %s", kinds[i], i, r)
		}
		if strings.HasPrefix(kinds[i], "pamtester") {
			if strings.Contains(r.stdout, codePrompt) {
				asked++
			} else {
				t.Logf("%s %d denied before the code prompt: %s", kinds[i], i, r)
			}
		}
	}
	if ok != 1 {
		t.Errorf("%d uses of one code across two hosts: %d accepted, want exactly 1", n, ok)
	}
	if asked < n-3 {
		t.Errorf("only %d of %d uses reached the code prompt", asked, n)
	}
	db.wantStatus(t, u.name, asked-1, false)
}

// TestPGParallelLogins: 100 users, each with a code of their own, log in
// at once through sshd, half on A (daemon) and half on B (exec): all in,
// none hung.
func TestPGParallelLogins(t *testing.T) {
	requireTools(t, "sshd", "ssh", "ssh-keygen")
	b := needPGHelper(t)
	db := newPGDB(t, pgCluster(t), 5)
	hostA, hostB := pgHost(t, b, db.hostDSN), pgHost(t, b, db.hostDSN)
	d := pgDaemon(t, b)
	const n = 100
	users := make([]*testUser, n)
	clients := make([]*sshClient, n)
	codes := make([]*askpass, n)
	names := make([]string, n)
	for i := range n {
		users[i] = newUser(t)
		names[i] = users[i].name
		clients[i] = newSSHClient(t, users[i])
		codes[i] = newAskpass(t, answers{code: codeNow(t, db.enroll(t, users[i].name), 0)})
	}
	const methods = "publickey,keyboard-interactive"
	extra := []string{"MaxStartups 120"}
	sshA := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(d.auth("required", hostA.config)), allowUsers: names, extra: extra})
	sshB := startSSHD(t, sshdConfig{authMethods: methods, pamStack: stack(hostB.auth("required")), allowUsers: names, extra: extra})
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			s := sshA
			if i%2 == 1 {
				s = sshB
			}
			results[i] = clients[i].login(s, methods, codes[i], remoteCmd)
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d parallel logins took %v", n, time.Since(begin).Round(time.Millisecond))
	failed := map[string]int{}
	for i, r := range results {
		host := map[bool]string{true: "A", false: "B"}[i%2 == 0]
		mustNotHang(t, fmt.Sprintf("login %d on %s", i, host), r)
		if r.exit != 0 || !strings.Contains(r.stdout, marker(users[i])) {
			failed[host]++
			t.Errorf("login %d on %s: %s", i, host, r)
		}
	}
	if len(failed) > 0 {
		t.Fatalf("of %d logins, %d on A and %d on B failed", n, failed["A"], failed["B"])
	}
	d.wantAttempts(t, users[0], 1, "outcome=accepted", "backend=postgres")
	db.wantStatus(t, users[1].name, 0, false)
	if st := db.status(t, users[1].name); st.LastSuccess.IsZero() {
		t.Errorf("B's login of %s left no last success in the database", users[1].name)
	}
}

// TestPGDatabaseDown: with the database stopped, a login is denied
// quickly, with reason=db-unavailable in the log, even under nullok; with
// on_unavailable = "local" a user with a secret in the local store gets
// in with it (backend=local fallback=db-unavailable), a user without one
// is denied; a silent server is bounded by connect_timeout.
func TestPGDatabaseDown(t *testing.T) {
	requireTools(t, "pamtester")
	b := needPGHelper(t)
	requireRoot(t)
	cl := pgtest.New(t)
	db := newPGDB(t, cl, 5)
	deny := pgHost(t, b, db.hostDSN, `connect_timeout = "2s"`, `query_timeout = "2s"`)
	local := pgHost(t, b, db.hostDSN, `on_unavailable = "local"`, `connect_timeout = "2s"`, `query_timeout = "2s"`)
	d := pgDaemon(t, b)
	admin, other := newUser(t), newUser(t)
	dbEn := db.enroll(t, admin.name)
	db.enroll(t, other.name)
	// admin also has a secret in host "local"'s own store (the
	// break-glass), put there with a files config of the same store.
	files := &otpEnv{bins: b, store: local.store, config: filepath.Join(t.TempDir(), "files.toml")}
	writeFile(t, files.config, configText(local.store, 5), 0o644)
	localEn := files.enroll(t, admin)
	denyA := pamService(t, d.auth("required", deny.config))
	denyNullok := pamService(t, d.auth("required", deny.config, "nullok"))
	localA := pamService(t, d.auth("required", local.config))
	localExec := pamService(t, local.auth("required"))

	// One login first, so that the daemon holds a connection the stop
	// breaks.
	wantPamtester(t, "database up", denyA(admin.name, codeNow(t, dbEn, 0)), true)
	if err := cl.Stop(); err != nil {
		t.Fatal(err)
	}
	timed := func(what string, f func() result) result {
		t.Helper()
		begin := time.Now()
		r := f()
		if took := time.Since(begin); took > 4*time.Second {
			t.Errorf("%s took %v with the database down, want under 4 s (connect_timeout 2 s)", what, took)
		}
		mustNotHang(t, what, r)
		return r
	}
	code := codeNow(t, localEn, 0)
	r := timed("deny", func() result { return denyA(admin.name, code) })
	wantPamtester(t, "deny, database down", r, false)
	if strings.Contains(r.stdout, codePrompt) {
		t.Errorf("asked for a code the database cannot check: %s", r)
	}
	d.wantAttempts(t, admin, 1, "outcome=error", "reason=db-unavailable", "backend=postgres")
	r = timed("deny with nullok", func() result { return denyNullok(other.name, code) })
	wantPamtester(t, "nullok, database down", r, false)
	d.wantAttempts(t, other, 1, "outcome=error", "reason=db-unavailable")

	r = timed("local, a local secret", func() result { return localA(admin.name, code) })
	wantPamtester(t, "local: admin with a local secret", r, true)
	d.wantAttempts(t, admin, 1, "outcome=accepted", "backend=local", "fallback=db-unavailable")
	r = timed("local, a local secret, replayed", func() result { return localExec(admin.name, code) })
	wantPamtester(t, "local through exec: the same code again", r, false)
	r = timed("local, exec, next code", func() result { return localExec(admin.name, codeNow(t, localEn, 1)) })
	wantPamtester(t, "local through exec: the next code", r, true)
	r = timed("local, no local secret", func() result { return localA(other.name, code) })
	wantPamtester(t, "local: a user without a local secret", r, false)
	d.wantAttempts(t, other, 2, "outcome=error", "reason=db-unavailable")

	// Started again: the database decides again (the pool replaces the
	// connections the stop broke), and the local secret is no longer used.
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	r = localA(admin.name, codeNow(t, localEn, -1))
	wantPamtester(t, "local, database back: the local secret's code", r, false)
	d.wantAttempts(t, admin, 1, "outcome=denied", "reason=wrong-code", "backend=postgres")

	// A server that accepts and never answers: bounded by connect_timeout.
	silent := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(silent, ".s.PGSQL.5432"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hung := pgHost(t, b, fmt.Sprintf("host=%s port=5432 user=x dbname=x sslmode=disable", silent), `connect_timeout = "1s"`, `query_timeout = "1s"`)
	r = timed("silent server", func() result { return pamService(t, d.auth("required", hung.config))(admin.name, code) })
	wantPamtester(t, "silent server", r, false)
	d.wantAttempts(t, admin, 2, "outcome=error", "reason=db-unavailable")
}

// TestPGPassfile: a passfile others may read, or that root does not own,
// denies every login with the fix in the log line; root's 0600 passfile
// works.
func TestPGPassfile(t *testing.T) {
	requireTools(t, "pamtester")
	b := needPGHelper(t)
	db := newPGDB(t, pgCluster(t), 10)
	d := pgDaemon(t, b)
	u := newUser(t)
	en := db.enroll(t, u.name)
	pass := filepath.Join(t.TempDir(), "pgpass")
	writeFile(t, pass, "*:*:*:*:unused\n", 0o644)
	h := pgHost(t, b, db.hostDSN+" passfile="+pass)
	run := pamService(t, d.auth("required", h.config))
	wantPamtester(t, "passfile 0644", run(u.name, codeNow(t, en, 0)), false)
	d.wantAttempts(t, u, 1, "outcome=error", "reason=config-error", "backend=postgres")
	if !strings.Contains(d.logs.String(), "chmod 0600 "+pass) {
		t.Errorf("the log does not give the fix (chmod 0600 %s):\n%s", pass, d.logs.String())
	}
	os.Chmod(pass, 0o600)
	os.Chown(pass, u.uid, u.gid)
	wantPamtester(t, "passfile of another user", run(u.name, codeNow(t, en, 0)), false)
	if !strings.Contains(d.logs.String(), "chown root:root "+pass) {
		t.Errorf("the log does not give the fix (chown root:root):\n%s", d.logs.String())
	}
	os.Chown(pass, 0, 0)
	wantPamtester(t, "passfile root 0600", run(u.name, codeNow(t, en, 0)), true)
	db.wantStatus(t, u.name, 0, false)
}
