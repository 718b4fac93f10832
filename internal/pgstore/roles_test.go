package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
)

// sqlState is the SQLSTATE of err, "" when it is no server error.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const insufficientPrivilege = "42501"

// hostRole is the host's login role, a member of otpgate_host.
func (d *testDB) hostRole() string { return "host_" + d.name }

// TestHostRoleReadsNoTable: the host role can read, write or truncate no
// table and use no sequence of the schema, by the catalog and by trying.
func TestHostRoleReadsNoTable(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "alice", "phone", testSecret, totp.Default)
	rows, err := d.admin.conn.Query(ctx, `SELECT c.oid::regclass::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'otpgate' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type rel struct{ Name, Kind string }
	rels, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rel])
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) < 7 {
		t.Fatalf("only %d relations in the schema: %v", len(rels), rels)
	}
	host := d.hostConn(t)
	role := d.hostRole()
	for _, r := range rels {
		var any bool
		q := `SELECT has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')`
		if r.Kind == "S" {
			q = `SELECT has_sequence_privilege($1, $2, 'USAGE, SELECT, UPDATE')`
		}
		if err := d.admin.conn.QueryRow(ctx, q, role, r.Name).Scan(&any); err != nil {
			t.Fatal(err)
		}
		if any {
			t.Errorf("the host role has a privilege on %s", r.Name)
		}
		if r.Kind == "S" {
			continue
		}
		_, err := host.Exec(ctx, "SELECT * FROM "+r.Name+" LIMIT 1")
		if sqlState(err) != insufficientPrivilege {
			t.Errorf("SELECT on %s as the host: %v, want permission denied", r.Name, err)
		}
	}
	for _, q := range []string{
		`INSERT INTO otpgate.authenticators (user_id, label, secret, algorithm, digits, period) VALUES (1, 'evil', '\x00000000000000000000000000000000', 'SHA1', 6, 30)`,
		`UPDATE otpgate.authenticators SET secret = '\x00000000000000000000000000000000'`,
		`UPDATE otpgate.user_state SET failures = 0, locked_until = NULL`,
		`DELETE FROM otpgate.pending_attempts`,
		`UPDATE otpgate.policy SET max_failures = 100`,
	} {
		if _, err := host.Exec(ctx, q); sqlState(err) != insufficientPrivilege {
			t.Errorf("%s as the host: %v, want permission denied", q, err)
		}
	}
}

// TestHostRoleRoutines: of every routine in the schema (pgcrypto's
// included), the host role may execute exactly HostRoutines; a role that
// is not a member of otpgate_host (what PUBLIC has) may execute none and
// cannot even use the schema; the host's calls of the owner-only
// routines fail.
func TestHostRoleRoutines(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	outsider := "outsider_" + d.name
	if _, err := d.admin.conn.Exec(ctx, "CREATE ROLE "+outsider+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	rows, err := d.admin.conn.Query(ctx, `SELECT p.oid::regprocedure::text, has_function_privilege($1, p.oid, 'EXECUTE'), has_function_privilege($2, p.oid, 'EXECUTE')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'otpgate' ORDER BY 1`, d.hostRole(), outsider)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		Name          string
		Host, Outside bool
	}
	fns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[fn])
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) < 30 {
		t.Fatalf("only %d routines in the schema; pgcrypto's should be there too", len(fns))
	}
	var allowed []string
	for _, f := range fns {
		if f.Host {
			allowed = append(allowed, f.Name)
		}
		if f.Host != slices.Contains(HostRoutines, f.Name) {
			t.Errorf("%s: the host may execute it: %v", f.Name, f.Host)
		}
		if f.Outside {
			t.Errorf("%s: a role outside otpgate_host may execute it", f.Name)
		}
	}
	if len(allowed) != len(HostRoutines) {
		t.Errorf("the host may execute %v; want %v", allowed, HostRoutines)
	}
	var usage bool
	if err := d.admin.conn.QueryRow(ctx, `SELECT has_schema_privilege($1, 'otpgate', 'USAGE, CREATE')`, outsider).Scan(&usage); err != nil || usage {
		t.Errorf("an outsider has a privilege on the schema: %v %v", usage, err)
	}
	host := d.hostConn(t)
	for _, q := range []string{
		`SELECT * FROM otpgate.begin_attempt_at('alice', '123456', NULL, '', '', now() + interval '1 year')`,
		`SELECT otpgate.hotp('\x3132333435363738393031323334353637383930', 1, 'SHA1', 6)`,
		`SELECT otpgate.hmac('\x00', '\x00', 'sha1')`,
		`SELECT otpgate.gen_random_bytes(4)`,
		`CREATE FUNCTION otpgate.f() RETURNS int LANGUAGE sql AS 'SELECT 1'`,
	} {
		if _, err := host.Exec(ctx, q); sqlState(err) != insufficientPrivilege {
			t.Errorf("%s as the host: %v, want permission denied", q, err)
		}
	}
	// Nothing a host may call returns a secret or a key: bytea comes back
	// only as the token of a pending attempt and as backup code salts.
	rows, err = d.admin.conn.Query(ctx, `SELECT p.oid::regprocedure::text, a.name
		FROM pg_proc p, unnest(p.proallargtypes, p.proargmodes, p.proargnames) AS a(typ, mode, name)
		WHERE p.oid = ANY ($1::regprocedure[]) AND a.mode IN ('o', 'b', 't') AND a.typ = 'bytea'::regtype ORDER BY 1, 2`, HostRoutines)
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for rows.Next() {
		var f, a string
		rows.Scan(&f, &a)
		outs = append(outs, f+" "+a)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := []string{"otpgate.backup_salts(text) o_salt", "otpgate.begin_attempt(text,text,bytea[],text,text) o_token"}
	if !slices.Equal(outs, want) {
		t.Errorf("bytea results of the host's routines: %v, want %v", outs, want)
	}
}

// TestSearchPathAttack: a host that may create schemas puts its own hmac,
// lower and "=" for text (always true) and a policy table with a window
// of 1000 in front of pg_catalog in its search_path, and calls the
// verification with it: nothing changes, a wrong code is wrong and the
// right one still works.
func TestSearchPathAttack(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "mallory", "phone", testSecret, totp.Default)
	if _, err := d.admin.conn.Exec(ctx, "GRANT CREATE ON DATABASE "+d.name+" TO "+d.hostRole()); err != nil {
		t.Fatal(err)
	}
	conn := d.hostConn(t)
	for _, q := range []string{
		`CREATE SCHEMA evil`,
		`CREATE FUNCTION evil.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE sql AS $$SELECT '\x0000000000000000000000000000000000000000'::bytea$$`,
		`CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS $$SELECT 'md5'$$`,
		`CREATE FUNCTION evil.yes(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
		`CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.yes)`,
		`CREATE TABLE evil.policy (id boolean, time_window integer, max_failures integer, lock_duration interval)`,
		`INSERT INTO evil.policy VALUES (true, 1000, 1000, '1 second')`,
		// Usable by otpgate_owner too, as whom the functions run.
		`GRANT USAGE ON SCHEMA evil TO PUBLIC`,
		`GRANT SELECT ON evil.policy TO PUBLIC`,
		`CREATE TEMP TABLE policy (id boolean, time_window integer, max_failures integer, lock_duration interval)`,
		`CREATE FUNCTION pg_temp.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE sql AS $$SELECT '\x0000000000000000000000000000000000000000'::bytea$$`,
		`SET search_path = pg_temp, evil, pg_catalog, otpgate`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var yes bool
	if err := conn.QueryRow(ctx, `SELECT '1' = '2'`).Scan(&yes); err != nil || !yes {
		t.Fatalf("the attack is not in place in the host's session: %v %v", yes, err)
	}
	cl := &Client{conn: conn}
	right := codeNow(t, testSecret, totp.Default, 0)
	for _, wrong := range []string{"000000", "999999", codeNow(t, testSecret, totp.Default, 5)} {
		if wrong == right {
			continue
		}
		if r := cl.Verify(ctx, "mallory", wrong, "", ""); r.Outcome != verify.Denied || r.Reason != "wrong-code" {
			t.Errorf("wrong code %s under the attacker's search_path: %+v", wrong, r)
		}
	}
	if r := cl.Verify(ctx, "mallory", right, "", ""); r.Outcome != verify.Accepted {
		t.Errorf("the right code under the attacker's search_path: %+v", r)
	}
}

// TestHostCannotUndoACharge: a host that runs the attempt inside its own
// transaction, to roll back a wrong guess after seeing the answer, gets
// no answer; the second half alone in a transaction rolled back leaves
// the failure counted; the same pending attempt checked again learns
// nothing new and then is gone; REPEATABLE READ is refused.
func TestHostCannotUndoACharge(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "oscar", "phone", testSecret, totp.Default)
	conn := d.hostConn(t)
	cl := d.host(t)
	wrong := "000000"
	if codeNow(t, testSecret, totp.Default, -1) == wrong || codeNow(t, testSecret, totp.Default, 0) == wrong || codeNow(t, testSecret, totp.Default, 1) == wrong {
		wrong = "111111"
	}
	failures := func() int {
		st, err := cl.Status(ctx, "oscar")
		if err != nil {
			t.Fatal(err)
		}
		return st.Failures
	}

	// The whole call inside a transaction block: COMMIT inside it fails.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var outcome *string
	err = tx.QueryRow(ctx, `CALL otpgate.verify('oscar', $1, NULL, '', '', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`, wrong).
		Scan(&outcome, new(*string), new(*string), new(*string), new(*int32), new(*time.Time), new(*int32))
	if err == nil {
		t.Errorf("CALL otpgate.verify inside a transaction block answered %q", deref(outcome))
	}
	tx.Rollback(ctx)

	// Both halves in one transaction: the second refuses.
	tx, _ = conn.Begin(ctx)
	var token []byte
	if err := tx.QueryRow(ctx, `SELECT o_token FROM otpgate.begin_attempt('oscar', $1, NULL, '', '')`, wrong).Scan(&token); err != nil || token == nil {
		t.Fatalf("begin_attempt: %v", err)
	}
	tx.Exec(ctx, "SAVEPOINT s")
	_, err = tx.Exec(ctx, `SELECT * FROM otpgate.finish_attempt($1)`, token)
	if err == nil || !strings.Contains(err.Error(), "only after its first half has committed") {
		t.Errorf("finish_attempt in the transaction of its charge: %v", err)
	}
	tx.Rollback(ctx)
	if n := failures(); n != 0 {
		t.Fatalf("failures %d after a rolled-back charge that answered nothing", n)
	}

	// The first half committed, the second rolled back: still counted.
	if err := conn.QueryRow(ctx, `SELECT o_token FROM otpgate.begin_attempt('oscar', $1, NULL, '', '')`, wrong).Scan(&token); err != nil {
		t.Fatal(err)
	}
	tx, _ = conn.Begin(ctx)
	var o string
	if err := tx.QueryRow(ctx, `SELECT o_outcome FROM otpgate.finish_attempt($1)`, token).Scan(&o); err != nil || o != "denied" {
		t.Fatalf("finish_attempt: %q %v", o, err)
	}
	tx.Rollback(ctx)
	if n := failures(); n != 1 {
		t.Errorf("failures %d after the answer was rolled back; want 1", n)
	}
	if err := conn.QueryRow(ctx, `SELECT o_outcome FROM otpgate.finish_attempt($1)`, token).Scan(&o); err != nil || o != "denied" {
		t.Errorf("the same pending attempt again: %q %v", o, err)
	}
	if _, err := conn.Exec(ctx, `SELECT * FROM otpgate.finish_attempt($1)`, token); err == nil {
		t.Error("a pending attempt was checked a third time")
	}
	if n := failures(); n != 1 {
		t.Errorf("failures %d; want 1", n)
	}

	tx, _ = conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	_, err = tx.Exec(ctx, `SELECT * FROM otpgate.begin_attempt('oscar', $1, NULL, '', '')`, wrong)
	if err == nil || !strings.Contains(err.Error(), "READ COMMITTED") {
		t.Errorf("begin_attempt at REPEATABLE READ: %v", err)
	}
	tx.Rollback(ctx)
}

// TestDatabaseUnavailable: a server that accepts and never answers, and
// a user's row held by a long transaction, both end in a denial
// (db-unavailable) within the bounds, not a hang.
func TestDatabaseUnavailable(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "peggy", "phone", testSecret, totp.Default)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	start := time.Now()
	_, err = Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=x sslmode=disable connect_timeout=1", addr.Port))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("connecting to a silent server: %v after %s", err, time.Since(start))
	}

	tx, err := d.admin.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM otpgate.users WHERE name = 'peggy' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	cl := d.host(t)
	cl.QueryTimeout = 300 * time.Millisecond
	start = time.Now()
	r := cl.Verify(ctx, "peggy", codeNow(t, testSecret, totp.Default, 0), "", "")
	if r.Outcome != verify.Failed || r.Reason != "db-unavailable" || time.Since(start) > 3*time.Second {
		t.Errorf("a verify that waits on the user's row: %+v after %s", r, time.Since(start))
	}
	tx.Rollback(ctx)
	// The server may still run the abandoned call once the row is free
	// (the cancel and the closed connection race with it): then it is
	// counted, the safe direction, and at most once.
	st, err := d.host(t).Status(ctx, "peggy")
	if err != nil || st.Failures > 1 {
		t.Errorf("the attempt that timed out: %+v %v", st, err)
	}
}

// TestInitAgainAndVersions: Init again keeps users and policy; a newer
// schema version, an otpgate schema or a pgcrypto that Init did not make
// are refused with the reason.
func TestInitAgainAndVersions(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	if got, err := d.admin.Policy(ctx); err != nil || got != DefaultPolicy() {
		t.Errorf("policy of a new database: %+v %v; want config.toml's defaults %+v", got, err, DefaultPolicy())
	}
	enroll(t, d, "quinn", "phone", testSecret, totp.Default)
	pol := Policy{Window: 2, MaxFailures: 9, LockDuration: time.Hour}
	if err := d.admin.SetPolicy(ctx, pol); err != nil {
		t.Fatal(err)
	}
	if err := d.admin.Init(ctx); err != nil {
		t.Fatalf("Init again: %v", err)
	}
	if got, err := d.admin.Policy(ctx); err != nil || got != pol {
		t.Errorf("policy after Init again: %+v %v", got, err)
	}
	if r := d.host(t).Verify(ctx, "quinn", codeNow(t, testSecret, totp.Default, 0), "", ""); r.Outcome != verify.Accepted {
		t.Errorf("after Init again: %+v", r)
	}
	if err := d.admin.SetPolicy(ctx, Policy{Window: 11, MaxFailures: 5, LockDuration: time.Minute}); err == nil {
		t.Error("a window of 11 was taken")
	}
	if _, err := d.admin.conn.Exec(ctx, `INSERT INTO otpgate.schema_version (version) VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	if err := d.admin.Init(ctx); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Init on a newer schema: %v", err)
	}

	c := cluster(t)
	for i, setup := range []string{
		`CREATE SCHEMA otpgate`,
		`CREATE EXTENSION pgcrypto SCHEMA public`,
	} {
		name := fmt.Sprintf("%s_x%d", d.name, i)
		if _, err := d.admin.conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, c.dsn("postgres", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, setup); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
		if err := Init(ctx, c.dsn("postgres", name)); err == nil || !strings.Contains(err.Error(), "database of its own") {
			t.Errorf("Init after %s: %v", setup, err)
		}
	}
}

// TestHostCannotMultiplyGuesses: a host sends one argon2id key per salt it
// was given (otpgate.backup_salts); a host that sends more, each a guess
// at a backup code under the same salt, gets only the first looked at:
// one charged failure is one guess, as on an honest host.
func TestHostCannotMultiplyGuesses(t *testing.T) {
	d := newDB(t)
	ctx := context.Background()
	enroll(t, d, "mallory", "phone", testSecret, totp.Default)
	codes, _ := backupcode.New(2)
	hs, _ := backupcode.HashSet(codes)
	if err := d.admin.SetBackupHashes(ctx, "mallory", hs); err != nil {
		t.Fatal(err)
	}
	p, err := backupcode.SplitHash(hs[0])
	if err != nil {
		t.Fatal(err)
	}
	key := func(code string) []byte {
		norm, ok := backupcode.Normalize(code)
		if !ok {
			t.Fatalf("%q is no backup code", code)
		}
		k, err := backupcode.Key(norm, p.Params, p.Salt)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	guess, _ := backupcode.New(1)
	conn := d.hostConn(t)
	var outcome *string
	err = conn.QueryRow(ctx, `CALL otpgate.verify('mallory', $1, $2, '', '', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		guess[0], [][]byte{key(guess[0]), key(codes[0])}).
		Scan(&outcome, new(*string), new(*string), new(*string), new(*int32), new(*time.Time), new(*int32))
	if err != nil {
		t.Fatal(err)
	}
	if deref(outcome) != "denied" {
		t.Fatalf("two keys under one salt, the second right: %q, want denied", deref(outcome))
	}
	// With scratch codes too (two salts), the second slot belongs to the
	// scratch codes' salt: a second guess at a code set there matches
	// nothing.
	ss, _ := backupcode.HashScratchSet([]string{"13572468"})
	if err := d.admin.SetBackupHashes(ctx, "mallory", append(hs, ss...)); err != nil {
		t.Fatal(err)
	}
	err = conn.QueryRow(ctx, `CALL otpgate.verify('mallory', $1, $2, '', '', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
		guess[0], [][]byte{key(guess[0]), key(codes[0])}).
		Scan(&outcome, new(*string), new(*string), new(*string), new(*int32), new(*time.Time), new(*int32))
	if err != nil {
		t.Fatal(err)
	}
	if deref(outcome) != "denied" {
		t.Fatalf("two salts, the second slot a right code under the first salt: %q, want denied", deref(outcome))
	}
	// The right codes, sent as an honest host sends them, still work:
	// nothing was spent.
	h := d.host(t)
	if r := h.Verify(ctx, "mallory", codes[0], "", ""); r.Outcome != verify.Accepted || r.Method != "backup" || r.BackupLeft != 2 {
		t.Errorf("the right code afterwards: %+v", r)
	}
	if r := h.Verify(ctx, "mallory", "1357-2468", "", ""); r.Outcome != verify.Accepted || r.Method != "backup" || r.BackupLeft != 1 {
		t.Errorf("the scratch code afterwards: %+v", r)
	}
}
