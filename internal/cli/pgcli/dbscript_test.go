package pgcli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otpgate/otpgate/internal/cli"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

var hostSeq atomic.Int64

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"otpgate": func() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestDBScripts runs testdata/dbscript/*.txt: the administrator's
// commands with --dsn against a real PostgreSQL (internal/pgtest), the
// otpgate command a real process. Each script has a database of its own,
// without the schema: $ADMIN_DSN is the superuser's DSN, $HOST_DSN a
// login role that becomes a member of otpgate_host once the script ran
// db init (hostverify grants it), $DBNAME the database.
func TestDBScripts(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatal("the db scripts need root (the store's owner); OTPGATE_REQUIRE_TOOLS is set")
		}
		t.Skip("the db scripts need root (the store's owner)")
	}
	c := pgtest.Get(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/dbscript",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"totp":       cmdTOTP,
			"hostverify": cmdHostVerify,
			"pgexec":     cmdPGExec,
			"backupcode": cmdBackupCode,
		},
		Setup: func(e *testscript.Env) error {
			db, _ := c.NewDatabase(t)
			host := fmt.Sprintf("web%d_%s", hostSeq.Add(1), db)
			c.ExecIn(t, db, "CREATE ROLE "+host+" LOGIN")
			e.Setenv("ADMIN_DSN", c.DSN("postgres", db))
			e.Setenv("HOST_DSN", c.DSN(host, db))
			e.Setenv("HOST_ROLE", host)
			e.Setenv("DBNAME", db)
			return scriptSetup(e)
		},
	})
}

// scriptSetup replaces $WORK in the *.toml files with the work directory.
func scriptSetup(e *testscript.Env) error {
	tomls, _ := filepath.Glob(filepath.Join(e.WorkDir, "*.toml"))
	for _, f := range tomls {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), "$WORK", e.WorkDir))
		if err := os.WriteFile(f, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cmdTOTP prints the current code of the secret in an enroll --json
// output file: totp FILE [STEPS], STEPS added to the current step.
func cmdTOTP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: totp FILE [STEPS]")
	}
	var en struct{ Secret string }
	if err := json.Unmarshal([]byte(ts.ReadFile(args[0])), &en); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	secret, err := keystore.DecodeSecret(en.Secret)
	ts.Check(err)
	delta := 0
	if len(args) == 2 {
		delta, err = strconv.Atoi(args[1])
		ts.Check(err)
	}
	code, err := totp.CodeAt(secret, uint64(totp.Step(time.Now(), 30)+int64(delta)), totp.Default)
	ts.Check(err)
	ts.Stdout().Write([]byte(code + "\n"))
}

// cmdHostVerify checks a code as a host does, through pgstore.Client
// with the host role: hostverify USER CODE prints the outcome, reason,
// method, label and failures, one "key=value" each. The code may be a
// file name holding it (the output of totp).
func cmdHostVerify(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: hostverify USER CODE|FILE")
	}
	code := args[1]
	if b, err := os.ReadFile(ts.MkAbs(code)); err == nil {
		code = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	grantHost(ts)
	cl, err := pgstore.Connect(ctx, ts.Getenv("HOST_DSN"))
	ts.Check(err)
	defer cl.Close(ctx)
	r := cl.Verify(ctx, args[0], code, "test", "192.0.2.7")
	outcome := map[verify.Outcome]string{verify.Accepted: "accepted", verify.Denied: "denied", verify.Locked: "locked", verify.NotEnrolled: "not-enrolled", verify.Failed: "failed"}[r.Outcome]
	fmt.Fprintf(ts.Stdout(), "outcome=%s reason=%s method=%s label=%s failures=%d backup_left=%d\n", outcome, r.Reason, r.Method, r.Label, r.Failures, r.BackupLeft)
}

// grantHost makes the script's host role a member of otpgate_host (the
// step db init tells the administrator to do).
func grantHost(ts *testscript.TestScript) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ts.Getenv("ADMIN_DSN"))
	ts.Check(err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "GRANT "+pgstore.HostRole+" TO "+ts.Getenv("HOST_ROLE"))
	ts.Check(err)
}

// cmdPGExec runs one SQL statement as the superuser: pgexec SQL.
func cmdPGExec(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: pgexec SQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ts.Getenv("ADMIN_DSN"))
	ts.Check(err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, args[0])
	if neg {
		if err == nil {
			ts.Fatalf("pgexec %s: succeeded", args[0])
		}
		return
	}
	ts.Check(err)
}

// cmdBackupCode prints backup code N (from 1) of an enroll --json output
// file: backupcode FILE N.
func cmdBackupCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: backupcode FILE N")
	}
	var en struct {
		BackupCodes []string `json:"backup_codes"`
	}
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &en))
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	if n < 1 || n > len(en.BackupCodes) {
		ts.Fatalf("%s has %d backup codes", args[0], len(en.BackupCodes))
	}
	fmt.Fprintln(ts.Stdout(), en.BackupCodes[n-1])
}
