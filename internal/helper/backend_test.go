package helper

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
)

// pgFixture is a fixture whose config says backend = "postgres", with a
// database of its own in the shared throwaway cluster, and the Options
// of a helper that links the backend.
type pgFixture struct {
	*fixture
	cluster *pgtest.Cluster
	role    string // the host's login role
	admin   *pgstore.Admin
	o       Options
	log     *strings.Builder
}

func newPGFixture(t *testing.T, maxFailures int, extra string, postgresKeys ...string) *pgFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the throwaway cluster runs as the postgres user: needs root")
	}
	c := pgtest.Shared(t)
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
	if err := a.SetPolicy(ctx, pgstore.Policy{Window: 1, MaxFailures: maxFailures, LockDuration: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fmt.Sprintf("backend = \"postgres\"\n%s\n[postgres]\ndsn = %q\nconnect_timeout = \"3s\"\nquery_timeout = \"3s\"\n%s\n", extra, c.DSN(role, db), strings.Join(postgresKeys, "\n")))
	pool := &pgstore.Pool{}
	t.Cleanup(pool.Close)
	log, buf := logBuf(t, f)
	return &pgFixture{fixture: f, cluster: c, role: role, admin: a, log: buf,
		o: Options{Log: log, Postgres: pool, DBReason: pgstore.Reason, Now: time.Now}}
}

// enrollDB enrolls user in the database and returns the secret.
func (p *pgFixture) enrollDB(t *testing.T, user string) []byte {
	t.Helper()
	secret := []byte("12345678901234567890" + user)
	if err := p.admin.Enroll(context.Background(), user, pgstore.Authenticator{Label: "phone", Secret: secret, Params: totp.Default}); err != nil {
		t.Fatal(err)
	}
	return secret
}

func codeAt(t *testing.T, secret []byte, at time.Time) string {
	t.Helper()
	c, err := totp.CodeAt(secret, uint64(totp.Step(at, 30)), totp.Default)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *pgFixture) wantLog(t *testing.T, fields ...string) {
	t.Helper()
	for _, line := range strings.Split(p.log.String(), "\n") {
		all := true
		for _, f := range fields {
			all = all && strings.Contains(line, f)
		}
		if all {
			return
		}
	}
	t.Errorf("no log line with %q in:\n%s", fields, p.log.String())
}

// TestPostgresLogin: a PAM login against the database says what the
// files backend says: accepted, the lock line, backup codes left; each
// attempt is one line with backend=postgres; forward_pass splits at the
// configured length; a user the database does not know is asked nothing
// (nullok passes them), and first-login enrollment is not offered.
func TestPostgresLogin(t *testing.T) {
	p := newPGFixture(t, 2, "[enroll]\nfirst_login = true\n")
	secret := p.enrollDB(t, "alice")
	now := time.Now()
	ui := &script{answers: []string{codeAt(t, secret, now)}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultSuccess {
		t.Fatalf("right code: %s %q", v, ui.messages)
	}
	p.wantLog(t, "user=alice service=sshd rhost=192.0.2.1 outcome=accepted method=totp authenticator=phone failures=0 policy=", "backend=postgres")
	if n := strings.Count(p.log.String(), "user=alice"); n != 1 {
		t.Errorf("%d log lines for one attempt:\n%s", n, p.log.String())
	}
	ui = &script{answers: []string{codeAt(t, secret, now)}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultAuthErr {
		t.Fatalf("replay: %s", v)
	}
	p.wantLog(t, "outcome=denied reason=replayed failures=1", "backend=postgres")
	ui = &script{answers: []string{"000000"}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultMaxTries || len(ui.messages) != 1 || !strings.Contains(ui.messages[0], "locked until") {
		t.Fatalf("the locking failure: %s %q", v, ui.messages)
	}
	p.wantLog(t, "outcome=denied reason=wrong-code failures=2 locked_until=", "backend=postgres")
	ui = &script{answers: []string{codeAt(t, secret, now.Add(30*time.Second))}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultMaxTries || !strings.Contains(strings.Join(ui.messages, ""), "try again after") {
		t.Fatalf("locked: %s %q", v, ui.messages)
	}
	p.wantLog(t, "outcome=locked reason=locked", "backend=postgres")

	// Backup codes, and the warning when few are left.
	bsecret := p.enrollDB(t, "bob")
	_ = bsecret
	codes := []string{"ABCDE-FGHJK", "MNPQR-STVWX"}
	hashes, err := backupcode.HashSet(codes)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.admin.SetBackupHashes(context.Background(), "bob", hashes); err != nil {
		t.Fatal(err)
	}
	ui = &script{answers: []string{strings.ToLower(codes[1])}}
	if v := p.pamWith(t, p.o, "bob", ui); v != protocol.ResultSuccess || !strings.Contains(strings.Join(ui.messages, ""), "1 backup codes left") {
		t.Fatalf("backup code: %s %q", v, ui.messages)
	}
	p.wantLog(t, "user=bob", "outcome=accepted method=backup", "backend=postgres")

	// forward_pass: the password, then the code of the configured length.
	csecret := p.enrollDB(t, "carol")
	ui = &script{answers: []string{"hunter2" + codeAt(t, csecret, time.Now())}}
	if v := p.pamWith(t, p.o, "carol", ui, "forward_pass"); v != protocol.ResultSuccess || ui.authtok == nil || *ui.authtok != "hunter2" {
		t.Fatalf("forward_pass: %s %v %q", v, ui.authtok, ui.messages)
	}

	// Not in the database: no prompt, no enrollment offered; nullok
	// passes, without it a denial.
	ui = &script{}
	if v := p.pamWith(t, p.o, "dave", ui, "first_login"); v != protocol.ResultAuthErr || len(ui.prompts) != 0 {
		t.Fatalf("not enrolled, first_login: %s %q %q", v, ui.prompts, ui.messages)
	}
	p.wantLog(t, "user=dave", "outcome=denied reason=not-enrolled")
	if v := p.pamWith(t, p.o, "dave", &script{}, "nullok"); v != protocol.ResultIgnore {
		t.Fatalf("not enrolled, nullok: %s", v)
	}
}

// TestPostgresUnavailableNullok: a database that cannot be reached is
// never "not enrolled": nullok does not let the user through, and nobody
// is asked for a code.
func TestPostgresUnavailableNullok(t *testing.T) {
	f := newFixture(t, fmt.Sprintf("backend = \"postgres\"\n[postgres]\ndsn = \"host=%s port=5432 user=x dbname=x\"\nconnect_timeout = \"1s\"\n", t.TempDir()))
	log, buf := logBuf(t, f)
	pool := &pgstore.Pool{}
	defer pool.Close()
	o := Options{Log: log, Postgres: pool, DBReason: pgstore.Reason}
	ui := &script{}
	if v := f.pamWith(t, o, "erin", ui, "nullok"); v != protocol.ResultAuthErr || len(ui.prompts) != 0 || !strings.Contains(strings.Join(ui.messages, ""), "could not check the code") {
		t.Fatalf("nullok, database down: %s %q %q", v, ui.prompts, ui.messages)
	}
	if !strings.Contains(buf.String(), "outcome=error reason=db-unavailable policy=") && !strings.Contains(buf.String(), "outcome=error reason=db-unavailable backend=postgres") {
		t.Errorf("log: %s", buf.String())
	}
}

// TestPostgresWithoutBackend: a helper built without the backend and with
// no way to hand over denies, with the reason, before any prompt; self
// service that would change the enrollment is refused with the way to
// enroll.
func TestPostgresWithoutBackend(t *testing.T) {
	f := newFixture(t, "backend = \"postgres\"\n[postgres]\ndsn = \"host=/nonexistent user=x\"\n")
	log, buf := logBuf(t, f)
	ui := &script{}
	if v := f.pamWith(t, Options{Log: log}, "alice", ui); v != protocol.ResultAuthErr || len(ui.prompts) != 0 {
		t.Fatalf("%s %q", v, ui.prompts)
	}
	if !strings.Contains(buf.String(), "outcome=error reason=config-error backend=postgres") || !strings.Contains(buf.String(), "otpgate-helper-pg") {
		t.Errorf("log: %s", buf.String())
	}
	handed := false
	o := Options{Log: log, Handoff: func(protocol.Request) error { handed = true; return fmt.Errorf("no such file") }}
	if v := f.pamWith(t, o, "alice", &script{}); v != protocol.ResultAuthErr || !handed {
		t.Fatalf("handoff: %s %v", v, handed)
	}

	g, so := selfFixture(t, "backend = \"postgres\"\n[postgres]\ndsn = \"host=/nonexistent user=x\"\n")
	for _, op := range []string{protocol.OpEnroll, protocol.OpBackupCodes, protocol.OpStatus} {
		ui := &script{answers: []string{"123456"}}
		if v := g.self(t, so, protocol.Request{Op: op}, ui); v != protocol.ResultAuthErr || len(ui.prompts) != 0 ||
			!strings.Contains(strings.Join(ui.messages, ""), "enroll through an administrator (otpgate enroll --dsn") {
			t.Errorf("%s: %s %q %q", op, v, ui.prompts, ui.messages)
		}
	}
}

// TestPostgresSelfLogin: sshcheck's check (self mode, verify) and a screen
// locker (self mode, authenticate) of a user enrolled in the database:
// the same attempt, counted in the database, logged with backend=postgres.
func TestPostgresSelfLogin(t *testing.T) {
	p := newPGFixture(t, 5, "")
	secret := p.enrollDB(t, "carol")
	_, so := selfFixture(t, "")
	so.SelfConfig, so.Log, so.Postgres, so.DBReason = p.config, p.o.Log, p.o.Postgres, p.o.DBReason
	now := time.Now()
	ui := &script{answers: []string{codeAt(t, secret, now)}}
	if v := p.self(t, so, protocol.Request{Op: protocol.OpVerify, Service: "sshcheck"}, ui); v != protocol.ResultSuccess {
		t.Fatalf("sshcheck, right code: %s %q", v, ui.messages)
	}
	p.wantLog(t, "user=carol service=self-sshcheck", "outcome=accepted", "backend=postgres")
	ui = &script{answers: []string{codeAt(t, secret, now)}}
	if v := p.self(t, so, protocol.Request{Op: protocol.OpAuthenticate, Service: "xscreensaver"}, ui); v != protocol.ResultAuthErr {
		t.Fatalf("screen locker, the same code: %s", v)
	}
	p.wantLog(t, "user=carol service=self-xscreensaver", "outcome=denied reason=replayed failures=1", "backend=postgres")
	// Another user's name in the request changes nothing.
	ui = &script{answers: []string{"000000"}}
	if v := p.self(t, so, protocol.Request{Op: protocol.OpVerify, User: "alice"}, ui); v != protocol.ResultAuthErr || len(ui.prompts) != 0 {
		t.Fatalf("other user: %s %q", v, ui.prompts)
	}
}

// hookUI answers every prompt with code, after running hook.
type hookUI struct {
	code     string
	hook     func()
	messages []string
}

func (u *hookUI) Prompt(string, bool) (string, error) {
	u.hook()
	return u.code, nil
}
func (u *hookUI) Message(m string, _ bool) { u.messages = append(u.messages, m) }
func (u *hookUI) Data(Data) error          { return fmt.Errorf("unexpected data") }

// TestPostgresFallbackMidLogin: on_unavailable = "local". The database
// answers the status, then refuses the host's login while the person
// types (ALTER ROLE ... NOLOGIN, its connections ended): the attempt
// falls back to the local store, where the user's local secret works and
// a wrong code is counted locally. While the database answers, a code of
// the local secret is a wrong code there, never retried locally.
func TestPostgresFallbackMidLogin(t *testing.T) {
	p := newPGFixture(t, 5, "", `on_unavailable = "local"`)
	dbSecret := p.enrollDB(t, "alice")
	_ = dbSecret
	localSecret, _ := p.enroll(t, "alice")
	cut := func() {
		p.cluster.Exec(t, "ALTER ROLE "+p.role+" NOLOGIN")
		p.cluster.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '"+p.role+"'")
	}
	restore := func() { p.cluster.Exec(t, "ALTER ROLE "+p.role+" LOGIN") }
	defer restore()

	// Up: the local secret's code is the database's wrong code.
	ui := &hookUI{code: codeAt(t, localSecret, time.Now()), hook: func() {}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultAuthErr {
		t.Fatalf("the local code with the database up: %s", v)
	}
	p.wantLog(t, "outcome=denied reason=wrong-code failures=1", "backend=postgres")
	if st, _ := p.store.ReadState("alice"); st.Failures != 0 || !st.LastSuccess.IsZero() {
		t.Errorf("the local store was used while the database answered: %+v", st)
	}

	// Cut while the person types: the local secret decides.
	ui = &hookUI{code: codeAt(t, localSecret, time.Now()), hook: cut}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultSuccess {
		t.Fatalf("fallback, the local code: %s %q\n%s", v, ui.messages, p.log.String())
	}
	p.wantLog(t, "outcome=accepted method=totp", "backend=local fallback=db-unavailable")
	ui = &hookUI{code: "000000", hook: func() {}}
	if v := p.pamWith(t, p.o, "alice", ui); v != protocol.ResultAuthErr {
		t.Fatalf("fallback, a wrong code: %s", v)
	}
	p.wantLog(t, "outcome=denied reason=wrong-code failures=1", "backend=local fallback=db-unavailable")
	if st, _ := p.store.ReadState("alice"); st.Failures != 1 {
		t.Errorf("local failures %d, want 1", st.Failures)
	}
	// Nobody else: bob has no local secret.
	p.enrollDB(t, "bob")
	if v := p.pamWith(t, p.o, "bob", &script{}); v != protocol.ResultAuthErr {
		t.Fatalf("bob, database down: %s", v)
	}
	p.wantLog(t, "user=bob", "outcome=error reason=db-unavailable", "backend=postgres")
	restore()
	if st, err := pgstoreStatus(t, p, "alice"); err != nil || st.Failures != 1 {
		t.Errorf("the database's count of alice: %+v %v, want the one failure from before the cut", st, err)
	}
}

func pgstoreStatus(t *testing.T, p *pgFixture, user string) (pgstore.Status, error) {
	t.Helper()
	cl, err := pgstore.Connect(context.Background(), p.cluster.DSN(p.role, strings.TrimPrefix(p.role, "host_")))
	if err != nil {
		return pgstore.Status{}, err
	}
	defer cl.Close(context.Background())
	return cl.Status(context.Background(), user)
}

// TestPostgresDeadlineMessage: before the enrollment deadline, a user the
// database does not know is let in and told to ask an administrator, not
// to run otpgate enroll (refused on a database host).
func TestPostgresDeadlineMessage(t *testing.T) {
	future := time.Now().AddDate(0, 0, 20).Format("2006-01-02")
	p := newPGFixture(t, 5, "[enroll]\ndeadline = "+future)
	ui := &script{}
	if v := p.pamWith(t, p.o, "dave", ui); v != protocol.ResultSuccess || len(ui.prompts) != 0 {
		t.Fatalf("before the deadline: %s %q %q", v, ui.prompts, ui.messages)
	}
	msg := strings.Join(ui.messages, "\n")
	if !strings.Contains(msg, "Set one up now: ask an administrator to enroll you") || strings.Contains(msg, "run otpgate enroll") {
		t.Errorf("message %q", msg)
	}
}
