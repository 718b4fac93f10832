package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"otpgate": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txt, one behaviour of the command line
// each. The otpgate command in them is a real process.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"totp": cmdTOTP,
		},
		// Config files need the absolute work directory: $WORK in a
		// *.toml file is replaced by it.
		Setup: func(e *testscript.Env) error { return replaceWork(e.WorkDir) },
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, nil
		},
	})
}

// replaceWork replaces $WORK in the *.toml files of dir with dir.
func replaceWork(dir string) error {
	tomls, _ := filepath.Glob(filepath.Join(dir, "*.toml"))
	for _, f := range tomls {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), "$WORK", dir))
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
