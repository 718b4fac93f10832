package sshcheck

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/passwd"
)

func TestSelect(t *testing.T) {
	const sftp = "/usr/lib/openssh/sftp-server"
	for _, c := range []struct {
		name, original, shell string
		want                  Target
	}{
		{"no command: login shell", "", "/bin/bash",
			Target{"/bin/bash", []string{"-bash"}}},
		{"login shell, another shell", "", "/usr/bin/zsh",
			Target{"/usr/bin/zsh", []string{"-zsh"}}},
		{"a command runs through the shell, untouched", "echo a; echo b | tr b c > marker; echo $HOME", "/bin/bash",
			Target{"/bin/bash", []string{"bash", "-c", "echo a; echo b | tr b c > marker; echo $HOME"}}},
		{"whitespace is kept as the shell would see it", "printf '%s\\n' \"a  b\"\t", "/bin/sh",
			Target{"/bin/sh", []string{"sh", "-c", "printf '%s\\n' \"a  b\"\t"}}},
		{"a blank command is a command", " ", "/bin/sh",
			Target{"/bin/sh", []string{"sh", "-c", " "}}},
		{"scp (legacy protocol)", "scp -t /tmp", "/bin/bash",
			Target{"/bin/bash", []string{"bash", "-c", "scp -t /tmp"}}},
		{"an external sftp subsystem is a command", "/usr/lib/openssh/sftp-server", "/bin/bash",
			Target{"/bin/bash", []string{"bash", "-c", "/usr/lib/openssh/sftp-server"}}},
		{"internal-sftp", "internal-sftp", "/bin/bash",
			Target{sftp, []string{"sftp-server"}}},
		{"internal-sftp with options", "internal-sftp -l INFO  -f AUTHPRIV", "/bin/bash",
			Target{sftp, []string{"sftp-server", "-l", "INFO", "-f", "AUTHPRIV"}}},
		{"a name that only starts like it", "internal-sftpx", "/bin/bash",
			Target{"/bin/bash", []string{"bash", "-c", "internal-sftpx"}}},
		{"internal-sftp later in a command", "echo internal-sftp", "/bin/bash",
			Target{"/bin/bash", []string{"bash", "-c", "echo internal-sftp"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Select(c.original, c.shell, sftp)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Select(%q, %q) = %+v, want %+v", c.original, c.shell, got, c.want)
			}
		})
	}
}

func TestSelectRefuses(t *testing.T) {
	for _, c := range []struct{ name, original, shell, sftp, want string }{
		{"relative shell", "", "bash", "/x/sftp-server", "not an absolute path"},
		{"empty shell", "echo", "", "/x/sftp-server", "not an absolute path"},
		{"internal-sftp without a server", "internal-sftp", "/bin/sh", "", "--sftp-server"},
		{"quoted internal-sftp option", `internal-sftp -d "/srv/a b"`, "/bin/sh", "/x/sftp-server", "quote"},
		{"backslash in an internal-sftp option", `internal-sftp -d /srv/a\ b`, "/bin/sh", "/x/sftp-server", "backslash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Select(c.original, c.shell, c.sftp)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Select = %+v, %v; want an error about %q", got, err, c.want)
			}
		})
	}
}

func TestTakeCode(t *testing.T) {
	env := []string{"PATH=/usr/bin:/bin", "OTPGATE_CODE=123456", "HOME=/home/a", "OTPGATE_CODE=654321",
		"OTPGATE_CODEX=keep", "XOTPGATE_CODE=keep", "SSH_ORIGINAL_COMMAND=env"}
	rest, code, found := TakeCode(env)
	if !found || code != "123456" {
		t.Errorf("code %q found %v, want the first value", code, found)
	}
	want := []string{"PATH=/usr/bin:/bin", "HOME=/home/a", "OTPGATE_CODEX=keep", "XOTPGATE_CODE=keep", "SSH_ORIGINAL_COMMAND=env"}
	if !reflect.DeepEqual(rest, want) {
		t.Errorf("environment after TakeCode:\n%q\nwant\n%q", rest, want)
	}
	if env[1] != "OTPGATE_CODE=123456" {
		t.Errorf("TakeCode changed its input")
	}

	_, _, found = TakeCode([]string{"OTPGATE_CODE="})
	if found {
		t.Errorf("an empty OTPGATE_CODE counts as a code")
	}
	rest, _, found = TakeCode([]string{"OTPGATE_CODE=", "A=b"})
	if found || !reflect.DeepEqual(rest, []string{"A=b"}) {
		t.Errorf("an empty OTPGATE_CODE is not removed: %q", rest)
	}
	if rest, _, found := TakeCode(nil); found || len(rest) != 0 {
		t.Errorf("TakeCode(nil) = %q, %v", rest, found)
	}
}

func TestWithout(t *testing.T) {
	env := []string{"SHLVL=2", "PATH=/bin", "SHLVLX=1", "SHLVL=3", "XSHLVL=1"}
	if got, want := Without(env, ShellLevel), []string{"PATH=/bin", "SHLVLX=1", "XSHLVL=1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Without(SHLVL) = %q, want %q", got, want)
	}
}

func TestShellFor(t *testing.T) {
	for _, c := range []struct {
		name  string
		acct  passwd.Entry
		env   []string
		shell string
	}{
		{"passwd entry", passwd.Entry{Name: "a", Shell: "/bin/bash"}, []string{"SHELL=/bin/zsh"}, "/bin/bash"},
		{"passwd entry without a shell: $SHELL", passwd.Entry{Name: "a"}, []string{"SHELL=/bin/zsh"}, "/bin/zsh"},
		{"no entry: $SHELL", passwd.Entry{}, []string{"SHELL=/usr/bin/fish"}, "/usr/bin/fish"},
		{"relative $SHELL does not count", passwd.Entry{}, []string{"SHELL=zsh"}, FallbackShell},
		{"nothing", passwd.Entry{}, nil, FallbackShell},
	} {
		if got := ShellFor(c.acct, c.env); got != c.shell {
			t.Errorf("%s: ShellFor = %q, want %q", c.name, got, c.shell)
		}
	}
}

func TestFindSFTPServer(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "sftp-server"), filepath.Join(dir, "plain")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	if got := FindSFTPServer([]string{filepath.Join(dir, "none"), plain, dir, exe}); got != exe {
		t.Errorf("FindSFTPServer = %q, want %q (the first executable regular file)", got, exe)
	}
	if got := FindSFTPServer([]string{plain}); got != "" {
		t.Errorf("FindSFTPServer found %q, which is not executable", got)
	}
}
