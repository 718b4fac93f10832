package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// install is one tree's otpgate as make install lays it out, under a
// private PREFIX: the module has that PREFIX's helper path compiled in, as
// a real install has, so the service line names no helper=.
type install struct {
	name    string // "now" or "baseline <rev>"
	prefix  string
	module  string // PREFIX/security/pam_otpgate.so
	helper  string // PREFIX/libexec/otpgate/otpgate-helper
	otpgate string // PREFIX/bin/otpgate
}

// makeInstall runs make install from src into dir/prefix, with the
// Makefile's own build steps (whatever they become: a launcher, other
// flags), so nothing here repeats them.
func makeInstall(name, src, dir string) (install, error) {
	prefix := filepath.Join(dir, "prefix")
	in := install{
		name: name, prefix: prefix,
		module:  filepath.Join(prefix, "security", "pam_otpgate.so"),
		helper:  filepath.Join(prefix, "libexec", "otpgate", "otpgate-helper"),
		otpgate: filepath.Join(prefix, "bin", "otpgate"),
	}
	cmd := exec.Command("make", "-s", "-C", src, "install",
		"PREFIX="+prefix, "PAMDIR="+filepath.Join(prefix, "security"), "DESTDIR=", "GO="+goBinary())
	// Not the outer make's flags: its jobserver descriptors are not ours.
	cmd.Env = withoutEnv(os.Environ(), "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR")
	if out, err := cmd.CombinedOutput(); err != nil {
		return in, fmt.Errorf("make install in %s: %v\n%s", src, err, out)
	}
	for _, p := range []string{in.module, in.helper, in.otpgate} {
		if _, err := os.Stat(p); err != nil {
			return in, fmt.Errorf("make install in %s made no %s (has the install layout changed? update internal/tools/pambench/build.go)", src, p)
		}
	}
	return in, nil
}

// copyTree copies the files git knows of in root (tracked and untracked,
// not ignored: no bin/ or build/), as they are now, to dst. The working
// tree can change while the benchmark runs; the copy cannot, and building
// in it leaves the working tree's bin/ and build/ alone.
func copyTree(root, dst string) error {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return fmt.Errorf("git ls-files in %s: %v (the benchmark builds from a git checkout)", root, err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if rel == "" {
			continue
		}
		from, to := filepath.Join(root, rel), filepath.Join(dst, rel)
		fi, err := os.Lstat(from)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(from)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(from, to, fi.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyFile(from, to string, perm os.FileMode) error {
	r, err := os.Open(from)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// baselineTree checks rev out into a new git worktree at dir and returns
// a function that removes it again (once, however often it is called).
// A revision this clone does not have (a shallow clone) is an error that
// says so.
func baselineTree(root, rev, dir string) (remove func(), err error) {
	full, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		shallow, _ := exec.Command("git", "-C", root, "rev-parse", "--is-shallow-repository").Output()
		why := "no such commit in this clone"
		if strings.TrimSpace(string(shallow)) == "true" {
			why += " (a shallow clone: git fetch --unshallow)"
		}
		return nil, errors.New(why)
	}
	cmd := exec.Command("git", "-C", root, "worktree", "add", "--detach", "--quiet", dir, strings.TrimSpace(string(full)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("git worktree add %s %s: %v\n%s", dir, rev, err, out)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if out, err := exec.Command("git", "-C", root, "worktree", "remove", "--force", dir).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "pambench: git worktree remove %s: %v %s\n", dir, err, bytes.TrimSpace(out))
				os.RemoveAll(dir)
				exec.Command("git", "-C", root, "worktree", "prune").Run()
			}
		})
	}, nil
}

// describe names the tree's commit, with -dirty when it has changes.
func describe(root string) string {
	out, err := exec.Command("git", "-C", root, "describe", "--always", "--dirty", "--abbrev=7").Output()
	if err != nil {
		return "unknown commit"
	}
	return strings.TrimSpace(string(out))
}

// goBinary is the go command that runs this program, else go on PATH.
func goBinary() string {
	if g := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" {
		if _, err := os.Stat(g); err == nil {
			return g
		}
	}
	return "go"
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		keep := true
		for _, n := range names {
			if k == n {
				keep = false
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}
