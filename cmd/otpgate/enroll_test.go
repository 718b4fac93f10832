package main_test

import (
	"bufio"
	"bytes"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/keystore"
)

// enrollInteractive runs enroll, reads the URI it prints, and answers the
// confirmation prompt with answer(secret) lines. It returns all of stdout
// and the exit code.
func (e *env) enrollInteractive(user string, answer func(secret string) []string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, "--config", e.config, "enroll", "--user", user, "--force", "--qr", "utf8") // --force: no system user
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var all strings.Builder
	r := bufio.NewReader(stdout)
	secret := ""
	for secret == "" {
		line, err := r.ReadString('\n')
		all.WriteString(line)
		if err != nil {
			e.t.Fatalf("enroll output ended before the URI: %q", all.String())
		}
		if uri, ok := strings.CutPrefix(line, "URI: "); ok {
			u, err := url.Parse(strings.TrimSpace(uri))
			if err != nil {
				e.t.Fatal(err)
			}
			secret = u.Query().Get("secret")
		}
	}
	for _, a := range answer(secret) {
		io.WriteString(stdin, a+"\n")
	}
	stdin.Close()
	rest, _ := io.ReadAll(r)
	all.Write(rest)
	cmd.Wait()
	return all.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

func TestEnrollConfirms(t *testing.T) {
	e := newEnv(t, "")
	out, stderr, code := e.enrollInteractive("alice", func(secret string) []string {
		return []string{"000000", e.code(secret, 0)}
	})
	if code != 0 {
		t.Fatalf("enroll: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"Scan this QR code", "█", "That code does not match", "Enrolled alice.", "Backup codes"} {
		if !strings.Contains(out, want) {
			t.Errorf("enroll output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "-") - strings.Count(out, "--"); n < 10 {
		t.Errorf("fewer than 10 backup codes shown:\n%s", out)
	}
	// The confirmation code counts as used: a login cannot replay it.
	st := e.state("alice")
	if st.LastStep(keystore.DefaultLabel) == 0 {
		t.Error("the confirmation code's step was not recorded")
	}
}

func TestEnrollWithoutMatchingCodeSavesNothing(t *testing.T) {
	e := newEnv(t, "")
	for name, answers := range map[string][]string{
		"three wrong codes": {"000000", "111111", "222222"},
		"no answer (EOF)":   nil,
	} {
		out, stderr, code := e.enrollInteractive("alice", func(string) []string { return answers })
		if code != 1 || !strings.Contains(stderr, "nothing was saved") {
			t.Errorf("%s: exit %d, stderr %q\n%s", name, code, stderr, out)
		}
		if strings.Contains(out, "Backup codes") {
			t.Errorf("%s: backup codes shown for an enrollment not saved", name)
		}
		if _, err := os.Stat(e.store + "/users/alice.toml"); !os.IsNotExist(err) {
			t.Errorf("%s: user file exists: %v", name, err)
		}
	}
}
