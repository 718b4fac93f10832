package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

type ui struct{ messages []string }

func (u *ui) Prompt(string, bool) (string, error) { return "123456", nil }
func (u *ui) Message(m string, _ bool)            { u.messages = append(u.messages, m) }
func (u *ui) Data(helper.Data) error              { return fmt.Errorf("unexpected data") }

// login runs bin as the PAM module does, for a request naming config.
func login(t *testing.T, bin, config string) (string, *ui) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "mine"), os.NewFile(uintptr(fds[1]), "theirs")
	defer mine.Close()
	cmd := exec.Command(bin)
	cmd.Stdin, cmd.Stdout, cmd.Env = theirs, theirs, []string{"PATH=/usr/bin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer cmd.Wait()
	c, err := helper.SocketFile(int(mine.Fd()), "helper")
	if err != nil {
		t.Fatal(err)
	}
	u := &ui{}
	v, err := helper.Converse(c, protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test", Args: []string{"config=" + config}}, u, 10*time.Second)
	if err != nil {
		t.Fatalf("Converse: %v", err)
	}
	return v, u
}

// TestHandoff: the files-only helper hands a postgres login to
// otpgate-helper-pg next to it, with the connection and the request;
// never to one that is not root's alone, nor when there is none; and
// it takes no --request-fd= itself.
func TestHandoff(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the helper runs as root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	lean := filepath.Join(dir, "otpgate-helper")
	data, err := os.ReadFile(testbin.Build(t, "cmd/otpgate-helper"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lean, data, 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.toml")
	os.WriteFile(config, []byte(fmt.Sprintf("store = %q\nbackend = \"postgres\"\n[postgres]\ndsn = \"host=/nonexistent user=x\"\n", filepath.Join(dir, "store"))), 0o644)

	// No otpgate-helper-pg: denied with the setup message.
	if v, u := login(t, lean, config); v != protocol.ResultAuthErr || !strings.Contains(strings.Join(u.messages, ""), "could not check") {
		t.Fatalf("no otpgate-helper-pg: %s %q", v, u.messages)
	}
	// A stand-in otpgate-helper-pg that answers and records its arguments
	// and the request it was handed.
	pg := filepath.Join(dir, "otpgate-helper-pg")
	marker := filepath.Join(dir, "ran")
	script := fmt.Sprintf(`#!/bin/sh
fd=${1#--request-fd=}
{ echo "$@"; cat <&$fd; } > %s
printf '\025\000\000\000\013service_err'
`, marker)
	os.WriteFile(pg, []byte(script), 0o775)
	os.Chmod(pg, 0o775)
	if v, _ := login(t, lean, config); v != protocol.ResultAuthErr {
		t.Fatalf("group-writable otpgate-helper-pg: %s", v)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a group-writable otpgate-helper-pg was run")
	}
	os.Chmod(pg, 0o755)
	v, _ := login(t, lean, config)
	got, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("otpgate-helper-pg was not run (verdict %s)", v)
	}
	if !strings.HasPrefix(string(got), "--request-fd=") || !strings.Contains(string(got), "user=alice\x00") || !strings.Contains(string(got), "config="+config) {
		t.Errorf("handed over: %q", got)
	}
	if v != protocol.ResultServiceErr {
		t.Errorf("the verdict of otpgate-helper-pg did not reach the client: %s", v)
	}

	// The files-only helper refuses a hand-over it cannot serve.
	out, err := exec.Command(lean, "--request-fd=3").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "not a handed-over request") {
		t.Errorf("--request-fd=3 to the files-only helper: %v %s", err, out)
	}
}

// TestDaemonBackend: the files-only daemon turns itself into
// otpgate-helper-pg at start only when the host's config says backend =
// "postgres"; on a files host it stays the files-only program (the
// driver would cost it memory and time for nothing).
func TestDaemonBackend(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the daemon runs as root")
	}
	for _, c := range []struct {
		name, config, want string
	}{
		{"files", "", "otpgate-helper"},
		{"postgres", "backend = \"postgres\"\n[postgres]\ndsn = \"host=/nonexistent user=x\"\n", "otpgate-helper-pg"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Chmod(dir, 0o755)
			config := filepath.Join(dir, "config.toml")
			os.WriteFile(config, []byte(fmt.Sprintf("store = %q\n%s", filepath.Join(dir, "store"), c.config)), 0o644)
			for _, b := range []struct{ out, tags string }{{"otpgate-helper", ""}, {"otpgate-helper-pg", "postgres"}} {
				cmd := exec.Command(testbin.Go(), "build", "-tags="+b.tags, "-ldflags", "-X main.selfConfig="+config,
					"-o", filepath.Join(dir, b.out), ".")
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("building %s: %v\n%s", b.out, err, out)
				}
			}
			sock := filepath.Join(dir, "helper.sock")
			d := exec.Command(filepath.Join(dir, "otpgate-helper"), "--listen", sock)
			d.Env = []string{"PATH=/usr/bin:/bin"}
			var errb strings.Builder
			d.Stderr = &errb
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				d.Process.Signal(syscall.SIGTERM)
				d.Wait()
			}()
			for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("no socket after 10 s:\n%s", errb.String())
				}
			}
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if got := filepath.Base(exe); got != c.want {
				t.Errorf("the daemon runs %s, want %s", got, c.want)
			}
		})
	}
}
